//! Hostile logs through `outgate report`: truncated lines, wrong types, huge values, invalid UTF-8,
//! binary files. Each bad line is counted and cited as FILE:LINE in the report's "not understood"
//! summary; nothing is fatal, and a line is held to 4 MiB whatever the file holds.

use crate::{Rng, outgate_limited, stderr};

const FLOW: &str = r#"{"proto":"tcp","src":"10.0.0.5:40000","dst":"192.0.2.7:443","verdict":"accept","packets":12,"bytes":3400,"app":"tls"}"#;

/// `outgate report --format json` on files of these contents: the JSON.
fn report(files: &[(&str, Vec<u8>)]) -> (serde_json::Value, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        paths.push(path.to_str().unwrap().to_string());
    }
    let mut args = vec!["report", "--format", "json"];
    args.extend(paths.iter().map(String::as_str));
    let out = outgate_limited(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (serde_json::from_slice(&out.stdout).unwrap(), paths)
}

#[test]
fn bad_lines_are_counted_and_cited_never_fatal() {
    let huge = "h".repeat(1 << 20);
    let lines: Vec<String> = vec![
        FLOW.to_string(),
        FLOW[..FLOW.len() / 2].to_string(), // 2: truncated
        FLOW.replace("12,", "\"twelve\","), // 3: wrong type
        FLOW.replace("3400", "18446744073709551616"), // 4: u64 overflow
        FLOW.replace("3400", "-1"),         // 5: negative
        FLOW.replace("3400", "1e400"),      // 6: beyond f64
        FLOW.replace("192.0.2.7:443", &huge), // 7: a 1 MB string: understood
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), // 8: deep nesting
        FLOW.replace("\"tcp\"", "null"),    // 9: null where a string goes
        FLOW.to_string(),
    ];
    let mut text = lines.join("\n").into_bytes();
    text.extend_from_slice(b"\n\xff\xfe\x00binary\n");
    let (json, paths) = report(&[("flows.log", text)]);
    let inputs = &json["inputs"];
    assert_eq!(inputs["flow_lines"], 3, "{inputs}");
    assert_eq!(inputs["not_understood"], 8, "{inputs}");
    let p = &paths[0];
    assert_eq!(
        inputs["not_understood_cites"],
        serde_json::json!([format!("{p}:2"), format!("{p}:3"), format!("{p}:4")])
    );
    assert_eq!(inputs["not_understood_more"], 5);
}

#[test]
fn binary_files_are_lines_not_understood() {
    let mut rng = Rng::new(0x5eed_0004);
    let noise: Vec<u8> = (0..1 << 20).map(|_| rng.word() as u8).collect();
    let lines = noise.split(|&b| b == b'\n').count() as u64;
    let (json, paths) = report(&[("noise.log", noise), ("ok.log", FLOW.as_bytes().to_vec())]);
    let inputs = &json["inputs"];
    assert_eq!(inputs["flow_lines"], 1);
    assert_eq!(inputs["files"][0]["lines"], lines);
    // A random line might be blank (two newlines in a row), never understood.
    let blank = inputs["blank_lines"].as_u64().unwrap();
    assert_eq!(inputs["not_understood"].as_u64().unwrap() + blank, lines);
    assert_eq!(inputs["not_understood_cites"][0], format!("{}:1", paths[0]));
}

/// Found: a line was read whole whatever its length, so a log without newlines (a 1 GiB binary
/// file here) was held in memory at once; the report now runs in a 512 MiB address space.
#[test]
fn a_binary_log_without_newlines_is_read_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("zeros.log");
    // Sparse: a GiB of zeros without taking the disk.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let ok = dir.path().join("ok.log");
    std::fs::write(&ok, format!("{FLOW}\n")).unwrap();
    let (big, ok) = (big.to_str().unwrap(), ok.to_str().unwrap());
    let out = outgate_limited(&["report", "--format", "json", big, ok]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inputs = &json["inputs"];
    assert_eq!(inputs["not_understood"], 1, "{inputs}");
    assert_eq!(inputs["not_understood_cites"][0], format!("{big}:1"));
    assert_eq!(inputs["flow_lines"], 1);
}
