//! Traffic control: the HTB trees [`super::apply`] sets up on the shaped devices, put back as they were
//! when a later step fails, and taken away by [`super::remove`].
//!
//! Outgate touches a device's root qdisc only when it is the kernel's default (handle `0:`: noqueue,
//! pfifo_fast, mq, fq_codel as `default_qdisc`) or outgate's own: an HTB `1:` on a device the installed
//! ruleset's description names (`shape=...`, see `describe`). Any other root qdisc is the admin's:
//! `apply` refuses to shape that device, and `remove` leaves it and says so.

use super::*;

/// What a device's root qdisc is, to outgate.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Root {
    /// The kernel's default (handle `0:`): outgate may replace it, and deleting outgate's brings it back.
    Default,
    /// An HTB `1:` on a device outgate's ruleset records.
    Outgate,
    /// Someone else's: the line `tc qdisc show` prints for it.
    Foreign(String),
    /// No such device (any more).
    Missing,
}

/// The shaping the installed ruleset records, and its devices.
#[derive(Clone, Debug)]
pub(super) struct Recorded {
    devices: Vec<String>,
    shaping: Shaping,
}

/// The shaping outgate's installed ruleset (either backend) describes, if any. A ruleset that cannot
/// describe itself records none: then no HTB counts as outgate's, and nothing of it is touched.
pub(super) fn recorded() -> Option<Recorded> {
    let cfg = installed().ok()??.config;
    let shaping = cfg.shaping.clone()?;
    Some(Recorded {
        devices: devices(&cfg).into_iter().map(String::from).collect(),
        shaping,
    })
}

fn root(device: &str, recorded: Option<&Recorded>) -> Result<Root, RulesError> {
    let shown = match run("tc", &["qdisc", "show", "dev", device, "root"], None) {
        Ok(shown) => shown,
        Err(RulesError::Command { message, .. }) if message.contains("Cannot find device") => {
            return Ok(Root::Missing);
        }
        Err(e) => return Err(e),
    };
    let line = shown.lines().next().unwrap_or_default().trim().to_string();
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["qdisc", _, "0:", ..] => Root::Default,
        ["qdisc", "htb", "1:", ..]
            if recorded.is_some_and(|r| r.devices.iter().any(|d| d == device)) =>
        {
            Root::Outgate
        }
        _ => Root::Foreign(line),
    })
}

/// Each device [`apply`] touches, and whether its root qdisc was outgate's before.
pub(super) struct Before {
    recorded: Option<Recorded>,
    devices: Vec<(String, bool)>,
}

/// Reads what `cfg`'s shaping will change: the devices it shapes (each must have the kernel's default
/// root qdisc or outgate's) and the ones an earlier apply shaped. Changes nothing.
pub(super) fn before(cfg: &RulesConfig) -> Result<Before, RulesError> {
    let recorded = recorded();
    let mut touched = Vec::new();
    if cfg.shaping.is_some() {
        for device in devices(cfg) {
            match root(device, recorded.as_ref())? {
                Root::Default => touched.push((device.to_string(), false)),
                Root::Outgate => touched.push((device.to_string(), true)),
                Root::Foreign(qdisc) => {
                    return Err(RulesError::ForeignQdisc {
                        device: device.to_string(),
                        qdisc,
                    });
                }
                Root::Missing => {
                    return Err(RulesError::Command {
                        command: format!("tc qdisc show dev {device} root"),
                        message: format!("Cannot find device \"{device}\""),
                    });
                }
            }
        }
    }
    if let Some(r) = &recorded {
        for device in &r.devices {
            if !touched.iter().any(|(d, _)| d == device) && root(device, Some(r))? == Root::Outgate
            {
                touched.push((device.clone(), true));
            }
        }
    }
    Ok(Before {
        recorded,
        devices: touched,
    })
}

/// Sets up `cfg`'s traffic control: its HTB tree on each shaped device, and none where an earlier apply
/// shaped a device it no longer does. On an error, every device is put back as `before` found it, and
/// the error returned (a [`RulesError::PutBack`] when that fails too).
pub(super) fn apply(cfg: &RulesConfig, before: &Before) -> Result<(), RulesError> {
    let wanted = devices(cfg);
    let mut result = Ok(());
    for (device, was_outgate) in &before.devices {
        result = match &cfg.shaping {
            Some(shaping) if wanted.contains(&device.as_str()) => {
                build(device, shaping, *was_outgate)
            }
            _ => delete_root(device),
        };
        if result.is_err() {
            break;
        }
    }
    let Err(e) = result else {
        return Ok(());
    };
    match put_back(before) {
        Ok(()) => Err(e),
        Err(back) => Err(RulesError::PutBack {
            failed: Box::new(e),
            family: "traffic control",
            back: Box::new(back),
        }),
    }
}

/// Puts every device [`before`] read back as it was: outgate's earlier tree, or the kernel's default.
pub(super) fn put_back(before: &Before) -> Result<(), RulesError> {
    for (device, was_outgate) in &before.devices {
        match (&before.recorded, was_outgate) {
            (Some(r), true) => {
                let ours = root(device, Some(r))? == Root::Outgate;
                build(device, &r.shaping, ours)?;
            }
            _ => delete_root(device)?,
        }
    }
    Ok(())
}

/// Makes `device`'s tree `shaping`'s: the root when it is not outgate's yet, every class and leaf
/// (`replace`: made or changed), and no class of an earlier, longer list.
fn build(device: &str, shaping: &Shaping, ours: bool) -> Result<(), RulesError> {
    for command in htb_commands(device, shaping, !ours) {
        let Some((program, args)) = command.split_first() else {
            continue;
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(program, &args, None)?;
    }
    let classes = run("tc", &["class", "show", "dev", device], None)?;
    let wanted: Vec<String> = (0..=shaping.classes.len() as u32).map(class_id).collect();
    for line in classes.lines() {
        let id = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["class", "htb", id, "parent", "1:1", ..] => id.to_string(),
            _ => continue,
        };
        if !wanted.contains(&id) {
            run("tc", &["class", "del", "dev", device, "classid", &id], None)?;
        }
    }
    Ok(())
}

/// Deletes `device`'s root qdisc if it is outgate's HTB (the kernel puts its default back); anything
/// else is left alone.
fn delete_root(device: &str) -> Result<(), RulesError> {
    let shown = match run("tc", &["qdisc", "show", "dev", device, "root"], None) {
        Ok(shown) => shown,
        Err(RulesError::Command { message, .. }) if message.contains("Cannot find device") => {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if shown.starts_with("qdisc htb 1: ") {
        run("tc", &["qdisc", "del", "dev", device, "root"], None)?;
    }
    Ok(())
}

/// Takes away the trees `recorded` names: each device's root qdisc while it is still outgate's HTB.
/// Returns a note for each root qdisc left because it is not (someone replaced it).
pub(super) fn remove(recorded: Option<Recorded>) -> Result<Vec<String>, RulesError> {
    let Some(r) = recorded else {
        return Ok(Vec::new());
    };
    let mut notes = Vec::new();
    for device in &r.devices {
        match root(device, Some(&r))? {
            Root::Outgate => {
                run("tc", &["qdisc", "del", "dev", device, "root"], None)?;
            }
            Root::Foreign(qdisc) => notes.push(format!(
                "left the root qdisc of {device} (`{qdisc}`): outgate's HTB there was replaced by one \
                 it did not make"
            )),
            Root::Default | Root::Missing => {}
        }
    }
    Ok(notes)
}
