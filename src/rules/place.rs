//! Keeping outgate's jumps where they work: first in their hooks. ufw, firewalld and Docker insert their
//! own rules at position 1 on every reload, and a firewall reload may flush a whole table; the daemon's
//! supervisor calls [`ensure_first`] every few seconds to put outgate's part back.

use super::iptables::{Present, jumps};
use super::shape::{self, SHAPE_CHAIN};
use super::{
    CHAIN, Family, NFT_TABLE, RulesConfig, RulesError, lines, present_iptables, restore, run,
};

/// Puts the jump to [`CHAIN`] back as the first rule of its hooks (iptables backend; both families, the
/// filter table's hook and the raw table's), where ufw, firewalld or Docker insert their own rules at
/// position 1 on every reload: an `ESTABLISHED,RELATED -j ACCEPT` above the jump passes every packet
/// after the handshake of a flow still under inspection. With shaping, the same for the mangle table:
/// the jumps to [`SHAPE_CHAIN`] first in POSTROUTING and the chain's CLASSIFY rules (without them a
/// SHAPE flow runs at full speed). Each repair is one `*-restore --noflush` transaction per family
/// (every jump deleted, inserted again at the top). Returns one line per repair (family, table, chain,
/// what stood first); none when nothing was wrong. Meant to be called every few seconds: when all is
/// well it only lists rule 1 of each hook, and the mangle table when shaping.
///
/// nft: nothing to do. Base chains run by priority, and an `accept` in another one does not skip
/// outgate's. An error when neither backend's ruleset is installed (a firewall reload may have flushed
/// it): the jump alone cannot bring it back.
pub fn ensure_first(cfg: &RulesConfig) -> Result<Vec<String>, RulesError> {
    cfg.validate()?;
    let mut repairs = Vec::new();
    for family in Family::ALL {
        let mut text = Vec::new();
        let mut found = Vec::new();
        for (table, hook, rest) in jumps(cfg) {
            let jump = format!("-A {hook} {rest}");
            // Any failure here (a tool that reports an empty chain as an error, say) is settled by
            // the full listing below, which reports real errors.
            let first = run(
                family.iptables(),
                &["-w", "-t", table, "-S", hook, "1"],
                None,
            )
            .ok()
            .and_then(|out| out.lines().next().map(str::to_string));
            if first.as_deref() == Some(jump.as_str()) {
                continue;
            }
            let present = match present_iptables(family, table, CHAIN)? {
                Some(present) if present.chain => present,
                _ => return nft_installed_or(format!("{} {table} table", family.name())),
            };
            let missing = !present.deletes.contains(&format!("-D {hook} {rest}"));
            found.push(format!(
                "{} {table} {hook}: {}, {}; the jump to {CHAIN} is rule 1 again",
                family.name(),
                first.map_or("the chain was empty".to_string(), |r| format!(
                    "rule 1 was `{r}`"
                )),
                if missing {
                    "the jump was missing"
                } else {
                    "the jump was further down"
                }
            ));
            text.push(format!("*{table}"));
            text.extend(present.deletes);
            text.push(format!("-I {hook} 1 {rest}"));
            text.push("COMMIT".into());
        }
        ensure_shaping(cfg, family, &mut text, &mut found)?;
        if !text.is_empty() {
            restore(family, &lines(text))?;
            repairs.extend(found);
        }
    }
    Ok(repairs)
}

/// The mangle table's part of [`ensure_first`]: the jumps to [`SHAPE_CHAIN`] (one per shaped device, in
/// order, first in POSTROUTING) and the chain's rules. When either is off, the whole part is written
/// again from the configuration (the chain's rules follow from it), as `rules --apply` writes it.
fn ensure_shaping(
    cfg: &RulesConfig,
    family: Family,
    text: &mut Vec<String>,
    found: &mut Vec<String>,
) -> Result<(), RulesError> {
    let body = shape::iptables_mangle_body(cfg);
    if body.is_empty() {
        return Ok(());
    }
    let listing = run(family.iptables(), &["-w", "-t", "mangle", "-S"], None)?;
    let present = Present::read(SHAPE_CHAIN, &listing);
    let jumps: Vec<String> = shape::devices(cfg)
        .iter()
        .map(|device| format!("-A POSTROUTING -o {device} -j {SHAPE_CHAIN}"))
        .collect();
    let first: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with("-A POSTROUTING "))
        .take(jumps.len())
        .collect();
    let own_rule = format!("-A {SHAPE_CHAIN} ");
    let wanted = body.iter().filter(|l| l.starts_with(&own_rule)).count();
    let in_place = first == jumps;
    let whole = present.chain && present.rules.len() == wanted;
    if in_place && whole {
        return Ok(());
    }
    let mut what = Vec::new();
    if !in_place {
        what.push(match first.first() {
            Some(rule) if !jumps.iter().any(|j| j == rule) => format!("rule 1 was `{rule}`"),
            Some(_) => "the jumps were out of order or missing".to_string(),
            None => "the chain was empty".to_string(),
        });
    }
    if !whole {
        what.push(format!(
            "{SHAPE_CHAIN} had {} of its {wanted} rules",
            present.rules.len()
        ));
    }
    found.push(format!(
        "{} mangle POSTROUTING: {}; the jumps to {SHAPE_CHAIN} are first again, with its rules",
        family.name(),
        what.join(", ")
    ));
    text.push("*mangle".into());
    text.extend(present.deletes);
    text.extend(body);
    text.push("COMMIT".into());
    Ok(())
}

/// For [`ensure_first`]: no iptables chain in `place`. Fine when the nft backend is in use.
fn nft_installed_or(place: String) -> Result<Vec<String>, RulesError> {
    match run("nft", &["list", "table", "inet", NFT_TABLE], None) {
        Ok(_) => Ok(Vec::new()),
        Err(_) => Err(RulesError::Gone(place)),
    }
}
