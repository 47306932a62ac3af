//! One namespace as a value: made and deleted by a [`Lab`] (the same names and cleanup as every live
//! test), for tests that run programs in it by argument list rather than through a shell.

use std::process::Command;

use super::{Lab, run};

/// A network namespace with loopback up, deleted (with what its [`Lab`] started) when dropped.
pub struct Netns {
    pub name: String,
    lab: Lab,
}

impl Netns {
    pub fn new() -> Netns {
        let mut lab = Lab::new();
        let name = lab.host("n");
        Netns { name, lab }
    }

    /// Two namespaces joined by a veth; `a` and `b` are each end's IPv4 (/24) and IPv6 (/64) address.
    pub fn pair(a: (&str, &str), b: (&str, &str)) -> (Netns, Netns) {
        let (na, nb) = (Netns::new(), Netns::new());
        // Interface names have 15 bytes at most: the lab's id (≤ 13) and a side.
        let (va, vb) = (format!("{}a", na.lab.id), format!("{}b", na.lab.id));
        run(&format!(
            "ip link add {va} netns {} type veth peer name {vb} netns {}",
            na.name, nb.name
        ));
        for (ns, dev, (v4, v6)) in [(&na, &va, a), (&nb, &vb, b)] {
            ns.ok("ip", &["addr", "add", &format!("{v4}/24"), "dev", dev]);
            ns.ok(
                "ip",
                &["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"],
            );
            ns.ok("ip", &["link", "set", dev, "up"]);
        }
        (na, nb)
    }

    /// `program args` to run in this namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// Runs `program args` here; panics with its stderr if it fails.
    pub fn ok(&self, program: &str, args: &[&str]) {
        self.out(program, args);
    }

    /// Runs `program args` here; its stdout (panics with its stderr if it fails).
    pub fn out(&self, program: &str, args: &[&str]) -> String {
        must(
            &mut self.exec(program, args),
            &format!("{program} {}", args.join(" ")),
        )
    }
}

/// Runs a command that must succeed; its stdout.
pub fn must(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
