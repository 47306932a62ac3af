//! The text table of the beacon, long connection and suspicion sections.

use super::*;

/// The three sections as text: beacons, long connections, suspicion by client.
pub(in crate::report) fn table(
    out: &mut String,
    beacons: &[Beacon],
    long: &[LongConn],
    suspects: &[Suspect],
) {
    heading(
        out,
        "Beacons (RITA's score; pairs with 20 or more connections)",
    );
    let rows: Vec<Row> = beacons
        .iter()
        .map(|b| {
            let s = &b.scores;
            Row {
                cells: vec![
                    clean(&b.client).into_owned(),
                    clean(&b.server).into_owned(),
                    b.connections.to_string(),
                    s.score.to_string(),
                    s.ts_score.to_string(),
                    s.ds_score.to_string(),
                    format!("{} s", s.ts_mode),
                ],
                details: vec![
                    format!(
                        "interval skew {:.3}, dispersion {} s; connection count {:.3}, coverage \
                         {:.3}; size skew {:.3}, dispersion {} B, mode {} B",
                        s.ts_skew,
                        s.ts_dispersion,
                        s.conn_count_score,
                        s.coverage,
                        s.ds_skew,
                        s.ds_dispersion,
                        s.ds_mode
                    ),
                    cite_text(&b.cites, b.cites_more),
                ],
            }
        })
        .collect();
    grid(
        out,
        &[
            ("CLIENT", false),
            ("SERVER", false),
            ("CONNS", true),
            ("SCORE", true),
            ("TIMING", true),
            ("SIZES", true),
            ("INTERVAL", true),
        ],
        &rows,
    );

    heading(out, "Long connections (an hour or more)");
    let rows: Vec<Row> = long
        .iter()
        .map(|l| Row {
            cells: vec![
                clean(&l.src).into_owned(),
                clean(&l.dst).into_owned(),
                clean(&l.proto).into_owned(),
                format!("{:.0} s", l.duration),
                l.bytes.to_string(),
            ],
            details: vec![format!("line: {}", clean(&l.cite))],
        })
        .collect();
    grid(
        out,
        &[
            ("SRC", false),
            ("DST", false),
            ("PROTO", false),
            ("DURATION", true),
            ("BYTES", true),
        ],
        &rows,
    );

    heading(out, "Suspicion by client");
    if suspects.is_empty() {
        out.push_str("  none\n");
    }
    for s in suspects {
        let _ = writeln!(out, "  {}  score {}", clean(&s.client), s.score);
        for r in &s.reasons {
            let _ = writeln!(
                out,
                "      +{} {}: {}",
                r.weight,
                clean(&r.what),
                cite_text(&r.cites, r.cites_more)
            );
        }
    }
}
