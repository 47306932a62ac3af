//! SHAPE in the kernel: a shaped flow is accepted, and its packets go through a slow traffic class.
//!
//! The daemon writes a SHAPE verdict as an accept with a class beside it ([`Marks::class_value`]), and
//! the chain saves both into the conntrack mark. Every packet of the flow, in both directions, carries
//! that conntrack mark; as it leaves a shaped device, the mangle table's POSTROUTING (chain
//! [`SHAPE_CHAIN`]) sends it to the flow's traffic class, where tc's HTB holds it to the class's rate.
//!
//! Which devices: traffic control shapes what *leaves* a device. In gateway mode a download's packets
//! (the server's answers) leave by `--lan` and an upload's by `--wan`, so both are shaped, each on its
//! own device. In host mode only what this host sends leaves by `--wan`: uploads are shaped, downloads
//! are not (that takes an IFB device, printed by `--shape-backend ifb`).
//!
//! The class-id scheme, on each shaped device:
//! ```text
//! 1:     HTB root qdisc, `default 10` (tc's minor numbers are hexadecimal)
//! 1:1    parent class: rate and ceil --link-rate (everything that leaves shares the link)
//! 1:10   the default class: what no SHAPE put in a class; rate link-rate minus the classes, ceil
//!        link-rate; its pfifo is `10:`
//! 1:1V   the class whose value in the class bits is V (1 to f), i.e. the policy's class V-1: rate and
//!        ceil its rate; its pfifo is `1V:`
//! ```
//! A class's ceil is its rate: it never borrows, so a shaped flow is slow even on an idle link. The
//! default class may use the whole link. `--link-rate` should be near the real uplink: above it, HTB
//! never holds the unshaped traffic back, the queue forms in the modem instead, where the slow classes'
//! packets wait behind everyone else's (their rate is then a ceiling, no longer a guarantee); below it,
//! every unshaped flow is capped at it.
//!
//! `--shape-backend classify` is what `--apply` sets up: iptables `CLASSIFY` (nft `meta priority set`)
//! and HTB with pfifo leaves, all of which the test kernel has. The others are printed as text for
//! production kernels: `fw` (tc's `fw` classifier on the packet mark, which the ruleset restores from
//! the conntrack mark), `cake` (CAKE with `fwmark`: its Bulk tin, no per-class rate), `ifb` (host mode:
//! downloads shaped on an IFB device fed by `act_ctinfo` and `mirred`).

use std::fmt;
use std::str::FromStr;

use super::*;
use crate::policy::Rate as BitRate;

/// The mangle table's chain that puts shaped flows' packets in their class.
pub const SHAPE_CHAIN: &str = "OUTGATE-SHAPE";

/// How the kernel puts a packet into its flow's class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShapeBackend {
    /// iptables `CLASSIFY` / nft `meta priority set` from the conntrack mark, and tc HTB: what
    /// `--apply` sets up.
    #[default]
    Classify,
    /// tc's `fw` classifier on the packet mark, restored from the conntrack mark (printed only).
    Fw,
    /// CAKE's `fwmark` tin selection: shaped flows go to the Bulk tin (printed only).
    Cake,
    /// Host mode's downloads on an IFB device, the conntrack mark copied by `act_ctinfo` (printed only).
    Ifb,
}

impl ShapeBackend {
    pub const ALL: [ShapeBackend; 4] = [
        ShapeBackend::Classify,
        ShapeBackend::Fw,
        ShapeBackend::Cake,
        ShapeBackend::Ifb,
    ];
}

impl FromStr for ShapeBackend {
    type Err = RulesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ShapeBackend::ALL
            .into_iter()
            .find(|b| b.to_string() == s)
            .ok_or_else(|| RulesError::ShapeBackend(s.to_string()))
    }
}

impl fmt::Display for ShapeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShapeBackend::Classify => "classify",
            ShapeBackend::Fw => "fw",
            ShapeBackend::Cake => "cake",
            ShapeBackend::Ifb => "ifb",
        })
    }
}

/// One traffic class of the policy, as the kernel gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeClass {
    pub name: String,
    pub rate: BitRate,
}

/// What `outgate rules --policy FILE` sets up for the policy's traffic classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shaping {
    /// The policy's classes, by index (a decision's `class`).
    pub classes: Vec<ShapeClass>,
    /// The rate of everything that leaves a shaped device together (see the module's header).
    pub link_rate: BitRate,
    pub backend: ShapeBackend,
}

/// `--link-rate`'s default: a gigabit uplink.
pub const DEFAULT_LINK_RATE: BitRate = BitRate(1_000_000_000);

impl Shaping {
    /// The shaping of a policy's classes; `None` when it has none (no tc is set up then).
    pub fn of_policy(
        policy: &crate::Policy,
        link_rate: BitRate,
        backend: ShapeBackend,
    ) -> Option<Shaping> {
        let classes: Vec<ShapeClass> = policy
            .classes()
            .iter()
            .map(|c| ShapeClass {
                name: c.name.clone(),
                rate: c.rate,
            })
            .collect();
        (!classes.is_empty()).then_some(Shaping {
            classes,
            link_rate,
            backend,
        })
    }

    /// The default class's rate: the link minus what the classes are promised.
    fn default_rate(&self) -> BitRate {
        BitRate(self.link_rate.0.saturating_sub(self.promised()))
    }

    fn promised(&self) -> u64 {
        self.classes.iter().map(|c| c.rate.0).sum()
    }

    /// Class index and class-bit value (index + 1) of each class.
    fn values(&self) -> impl Iterator<Item = (u32, &ShapeClass)> {
        (1..).zip(&self.classes)
    }
}

/// The devices a configuration shapes: gateway mode `--lan` (downloads) and `--wan` (uploads), host
/// mode `--wan`. Empty when they are missing (which shaping refuses: see [`RulesConfig::validate`]).
pub fn devices(cfg: &RulesConfig) -> Vec<&str> {
    match cfg.mode {
        Mode::Gateway => [&cfg.lan, &cfg.wan]
            .into_iter()
            .filter_map(|d| d.as_deref())
            .collect(),
        Mode::Host => cfg.wan.as_deref().into_iter().collect(),
    }
}

/// Checks a configuration's shaping: where it can happen, and whether its rates make sense.
pub(super) fn check(cfg: &RulesConfig, shaping: &Shaping) -> Result<(), RulesError> {
    if cfg.mode == Mode::Host && cfg.wan.is_none() {
        return Err(RulesError::ShapeNeedsWan);
    }
    for (option, name) in [("lan", &cfg.lan), ("wan", &cfg.wan)] {
        if let Some(name) = name
            && name.ends_with('+')
        {
            return Err(RulesError::ShapeWildcard {
                option,
                name: name.clone(),
            });
        }
    }
    if shaping.classes.is_empty() || shaping.classes.len() > usize::from(CLASSES) {
        return Err(RulesError::ShapeClasses(shaping.classes.len()));
    }
    if shaping.promised() >= shaping.link_rate.0 {
        return Err(RulesError::ShapeRates {
            promised: BitRate(shaping.promised()).to_string(),
            link: shaping.link_rate.to_string(),
        });
    }
    Ok(())
}

/// tc's class for class-bit value `value` (0: the default class), as tc writes it: `1:10` to `1:1f`.
pub fn class_id(value: u32) -> String {
    format!("1:{:x}", 0x10 + value)
}

/// The same class as iptables-save prints `CLASSIFY --set-class`.
fn class_id_iptables(value: u32) -> String {
    format!("0001:{:04x}", 0x10 + value)
}

/// The conntrack mark of an accepted flow in class `value`, as `V/M` over outgate's bits: only an
/// accept's class counts (a dropped flow's class bits, left by a reload, shape nothing).
fn accepted_in(marks: Marks, value: u32) -> (u32, u32) {
    let class = value << marks.class_mask().trailing_zeros();
    (marks.verdict(Verdict::Accept) | class, marks.full_mask())
}

/// The mangle table's part (between `*mangle` and `COMMIT`), empty without shaping: the chain, each
/// class's rule, and a jump from POSTROUTING per shaped device.
pub(super) fn iptables_mangle_body(cfg: &RulesConfig) -> Vec<String> {
    let Some(shaping) = &cfg.shaping else {
        return Vec::new();
    };
    let c = SHAPE_CHAIN;
    let m = cfg.marks;
    let mut l = vec![format!(":{c} - [0:0]")];
    for (place, device) in (1..).zip(devices(cfg)) {
        l.push(format!("-I POSTROUTING {place} -o {device} -j {c}"));
    }
    match shaping.backend {
        ShapeBackend::Classify => {
            l.push(
                "# SHAPE: an accepted flow's class, from its conntrack mark (both directions), to tc class 1:1V."
                    .into(),
            );
            for (value, _) in shaping.values() {
                let (v, mask) = accepted_in(m, value);
                l.push(format!(
                    "-A {c} -m connmark --mark {}/{} -j CLASSIFY --set-class {}",
                    hex(v),
                    hex(mask),
                    class_id_iptables(value)
                ));
            }
        }
        ShapeBackend::Fw | ShapeBackend::Ifb => {
            let both = hex(m.full_mask());
            l.extend([
                "# SHAPE: tc's fw classifier reads the packet mark; copy the conntrack mark's verdict and class".into(),
                "# into it, on both directions' packets.".into(),
                format!("-A {c} -j CONNMARK --restore-mark --nfmask {both} --ctmask {both}"),
            ]);
        }
        ShapeBackend::Cake => {
            let class_mask = hex(m.class_mask());
            let bulk = hex(1 << m.class_mask().trailing_zeros());
            l.push(
                "# SHAPE: CAKE's fwmark picks a tin from the packet mark's class bits; value 1 is its Bulk tin."
                    .into(),
            );
            for (value, _) in shaping.values() {
                let (v, mask) = accepted_in(m, value);
                l.push(format!(
                    "-A {c} -m connmark --mark {}/{} -j MARK --set-xmark {bulk}/{class_mask}",
                    hex(v),
                    hex(mask)
                ));
            }
        }
    }
    l
}

/// The nft chain that does what [`iptables_mangle_body`] does, indented for `table inet outgate`;
/// empty without shaping. `meta priority set` is nft's CLASSIFY (both set the packet's priority, which
/// HTB reads as its class).
pub(super) fn nft_chain(cfg: &RulesConfig) -> Vec<String> {
    let Some(shaping) = &cfg.shaping else {
        return Vec::new();
    };
    let m = cfg.marks;
    let names: Vec<String> = devices(cfg).iter().map(|d| format!("\"{d}\"")).collect();
    let oif = match names.as_slice() {
        [one] => format!("oifname {one}"),
        many => format!("oifname {{ {} }}", many.join(", ")),
    };
    let mut l = vec![
        "\t# SHAPE: an accepted flow's class, from its conntrack mark (both directions), as its packets".into(),
        "\t# leave by a shaped device".into(),
        "\tchain shape {".into(),
        "\t\ttype filter hook postrouting priority mangle; policy accept;".into(),
    ];
    for (value, _) in shaping.values() {
        let (v, mask) = accepted_in(m, value);
        let matched = format!("{oif} ct mark & {} == {}", hex(mask), hex(v));
        let statement = match shaping.backend {
            ShapeBackend::Classify => format!("meta priority set {}", class_id(value)),
            ShapeBackend::Fw | ShapeBackend::Ifb => format!(
                "meta mark set meta mark & {} | {}",
                hex(!m.full_mask()),
                hex(v)
            ),
            ShapeBackend::Cake => format!(
                "meta mark set meta mark & {} | {}",
                hex(!m.class_mask()),
                hex(1 << m.class_mask().trailing_zeros())
            ),
        };
        l.push(format!("\t\t{matched} {statement}"));
    }
    l.push("\t}".into());
    l
}

/// One command line, as words.
pub(super) type Argv = Vec<String>;

fn argv(words: &str) -> Argv {
    words.split_whitespace().map(str::to_string).collect()
}

/// HTB's quantum for `rate`: the kernel's own default (rate / r2q 10, in bytes), kept where it does not
/// warn (1514 to 200000 bytes). It only matters for what the default class borrows.
fn quantum(rate: BitRate) -> u64 {
    (rate.0 / 8 / 10).clamp(1514, 200_000)
}

/// A class's pfifo holds about 100 ms of its rate in full-size packets, at least 10 and at most 1000
/// (the kernel's txqueuelen): longer only adds delay to a slow class.
fn pfifo_limit(rate: BitRate) -> u64 {
    (rate.0 / 10 / 8 / 1514).clamp(10, 1000)
}

/// `tc` commands that make `device`'s HTB tree: root, parent, default class, one class per policy class,
/// each with its pfifo. `root` false leaves out the root qdisc (already outgate's: HTB has no `change`).
pub fn htb_commands(device: &str, shaping: &Shaping, root: bool) -> Vec<Argv> {
    let link = shaping.link_rate;
    let mut l = Vec::new();
    if root {
        l.push(argv(&format!(
            "tc qdisc replace dev {device} root handle 1: htb default 10"
        )));
    }
    l.push(argv(&format!(
        "tc class replace dev {device} parent 1: classid 1:1 htb rate {link} ceil {link} quantum {}",
        quantum(link)
    )));
    let classes = std::iter::once((0, shaping.default_rate(), link))
        .chain(shaping.values().map(|(v, c)| (v, c.rate, c.rate)));
    for (value, rate, ceil) in classes {
        let id = class_id(value);
        let handle = format!("{:x}:", 0x10 + value);
        l.push(argv(&format!(
            "tc class replace dev {device} parent 1:1 classid {id} htb rate {rate} ceil {ceil} quantum {}",
            quantum(rate)
        )));
        l.push(argv(&format!(
            "tc qdisc replace dev {device} parent {id} handle {handle} pfifo limit {}",
            pfifo_limit(rate)
        )));
    }
    l
}

/// tc's `fw` filters: packet mark `V/M` (accept and class value) to class 1:1V.
fn fw_filters(device: &str, marks: Marks, shaping: &Shaping) -> Vec<Argv> {
    shaping
        .values()
        .map(|(value, _)| {
            let (v, mask) = accepted_in(marks, value);
            argv(&format!(
                "tc filter replace dev {device} parent 1: protocol all prio 1 handle {}/{} fw classid {}",
                hex(v),
                hex(mask),
                class_id(value)
            ))
        })
        .collect()
}

/// The IFB device that stands for `device`'s ingress (at most 15 characters).
fn ifb_name(device: &str) -> String {
    let mut name = format!("ifb4{device}");
    name.truncate(15);
    name
}

/// The shell text of a backend's traffic control (what `outgate rules --policy FILE` prints after the
/// ruleset), with a header that says where it runs.
pub fn script(cfg: &RulesConfig) -> Result<String, RulesError> {
    cfg.validate()?;
    let Some(shaping) = &cfg.shaping else {
        return Ok(String::new());
    };
    let m = cfg.marks;
    let mut l: Vec<String> = vec![format!(
        "# Traffic control for the policy's classes, --shape-backend {}, --link-rate {}:",
        shaping.backend, shaping.link_rate
    )];
    for (value, class) in shaping.values() {
        l.push(format!(
            "#   class {} {}: class bits {}, tc class {}",
            class.name,
            class.rate,
            hex(m.class_value((value - 1) as u8)),
            class_id(value)
        ));
    }
    l.extend(
        match shaping.backend {
            ShapeBackend::Classify => [
                "# What `outgate rules --apply --policy FILE` runs (with the ruleset's CLASSIFY rules), as tested",
                "# live in network namespaces (tests/shape_live.rs): HTB and pfifo on each shaped device.",
            ],
            ShapeBackend::Fw => [
                "# Printed for kernels with cls_fw; `--apply` runs only classify. tests/shape_live.rs checks its",
                "# syntax on a kernel without cls_fw: all parses, and the kernel refuses only the fw filters.",
            ],
            ShapeBackend::Cake => [
                "# Printed for kernels with sch_cake; `--apply` runs only classify. CAKE has no per-class rate:",
                "# shaped flows get its Bulk tin (1/16 of the link when it is busy, more when it is not).",
            ],
            ShapeBackend::Ifb => [
                "# Printed for kernels with act_ctinfo (and cls_fw); `--apply` runs only classify. Its syntax is",
                "# checked on a kernel without them (tests/shape_live.rs): the kernel refuses only those parts.",
            ],
        }
        .map(String::from),
    );
    let shell = |commands: Vec<Argv>| commands.into_iter().map(|a| a.join(" "));
    let devices = devices(cfg);
    match shaping.backend {
        ShapeBackend::Classify => {
            for d in &devices {
                l.extend(shell(htb_commands(d, shaping, true)));
            }
        }
        ShapeBackend::Fw => {
            l.push(
                "# The ruleset restores the conntrack mark into the packet mark; fw reads it."
                    .into(),
            );
            for d in &devices {
                l.extend(shell(htb_commands(d, shaping, true)));
                l.extend(shell(fw_filters(d, m, shaping)));
            }
        }
        ShapeBackend::Cake => {
            l.push(format!(
                "# fwmark {}: the class bits pick the tin; the ruleset writes 1 there (Bulk, under diffserv4) for",
                hex(m.class_mask())
            ));
            l.push("# every class's flows.".into());
            for d in &devices {
                l.push(format!(
                    "tc qdisc replace dev {d} root cake bandwidth {} diffserv4 fwmark {}",
                    shaping.link_rate,
                    hex(m.class_mask())
                ));
            }
        }
        ShapeBackend::Ifb => {
            l.push(
                "# Uploads leave by the shaped devices: HTB and fw there, as --shape-backend fw."
                    .into(),
            );
            for d in &devices {
                l.extend(shell(htb_commands(d, shaping, true)));
                l.extend(shell(fw_filters(d, m, shaping)));
            }
            if cfg.mode == Mode::Host {
                l.push(
                    "# Downloads arrive by --wan: its ingress copies the conntrack mark into the packet mark"
                        .into(),
                );
                l.push(
                    "# (act_ctinfo) and redirects every packet to an IFB device, whose egress is shaped."
                        .into(),
                );
                for d in &devices {
                    let ifb = ifb_name(d);
                    l.extend([
                        format!("ip link add {ifb} type ifb"),
                        format!("ip link set {ifb} up"),
                        format!("tc qdisc replace dev {d} handle ffff: ingress"),
                        format!(
                            "tc filter replace dev {d} parent ffff: protocol all prio 1 u32 match u32 0 0 action ctinfo cpmark {} action mirred egress redirect dev {ifb}",
                            hex(m.full_mask())
                        ),
                    ]);
                    l.extend(shell(htb_commands(&ifb, shaping, true)));
                    l.extend(shell(fw_filters(&ifb, m, shaping)));
                }
            } else {
                l.push(
                    "# Gateway mode needs no IFB: downloads are shaped as they leave by --lan."
                        .into(),
                );
            }
        }
    }
    Ok(lines(l))
}

#[cfg(test)]
mod tests;
