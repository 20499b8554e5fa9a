//! docs/BENCHMARKS.md from a run's [`Results`]: the machine, the commands,
//! the targets with their verdicts, then every comparison with its medians
//! and each repetition's figures.

use std::fmt::Write as _;
use std::time::Duration;

use super::redis_stats::RedisCost;
use super::{BenchArgs, ReadTarget, Results, WriteLevel};
use crate::bench::wrk::WrkResult;

pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Medians of a target's runs: (requests/s, p50 ms, p99 ms).
pub fn read_medians(runs: &[WrkResult]) -> (f64, f64, f64) {
    (
        median(runs.iter().map(WrkResult::rps)),
        median(runs.iter().map(|r| r.p50_us as f64 / 1000.0)),
        median(runs.iter().map(|r| r.p99_us as f64 / 1000.0)),
    )
}

/// One target line: what, goal, measured, verdict (`None`: a figure to
/// watch, with no goal yet).
pub struct Verdict {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub met: Option<bool>,
}

fn verdict(what: impl Into<String>, goal: &str, measured: String, met: Option<bool>) -> Verdict {
    Verdict {
        what: what.into(),
        goal: goal.into(),
        measured,
        met,
    }
}

/// The read targets' medians, and each one's Redis cost (median per request).
fn read_figures(r: &Results, target: ReadTarget) -> Option<((f64, f64, f64), RedisCost)> {
    let read = r.read(target)?;
    Some((read_medians(&read.runs), median_cost(&read.redis)))
}

pub fn median_cost(costs: &[RedisCost]) -> RedisCost {
    RedisCost {
        cpu_us: median(costs.iter().map(|c| c.cpu_us)),
        commands: median(costs.iter().map(|c| c.commands)),
        output_bytes: median(costs.iter().map(|c| c.output_bytes)),
        scans: median(costs.iter().map(|c| c.scans)),
        scan_cpu_us: median(costs.iter().map(|c| c.scan_cpu_us)),
    }
}

pub fn verdicts(r: &Results) -> Vec<Verdict> {
    let mut out = Vec::new();
    let cached = read_figures(r, ReadTarget::Cached);
    if let (Some((hit, hit_redis)), Some((floor, _))) =
        (cached, read_figures(r, ReadTarget::FloorPerWorker))
    {
        let share = hit.0 / floor.0;
        out.push(verdict(
            "cached `HIT` vs the per-worker floor (the reference), requests/s",
            "≥ 0.8 ×",
            format!("{:.0} vs {:.0} req/s = {share:.2} ×", hit.0, floor.0),
            Some(share >= 0.8),
        ));
        let ratio = hit.2 / floor.2;
        out.push(verdict(
            "cached `HIT` vs the per-worker floor, p99",
            "≤ 1.2 × the floor's",
            format!("{:.2} vs {:.2} ms = {ratio:.2} ×", hit.2, floor.2),
            Some(ratio <= 1.2),
        ));
        out.push(verdict(
            "Redis per cached `HIT`: CPU, commands, bytes sent",
            "(measured)",
            format!(
                "{:.2} µs, {:.2} commands, {:.0} bytes",
                hit_redis.cpu_us, hit_redis.commands, hit_redis.output_bytes
            ),
            None,
        ));
    }
    for (what, target, reference, goal) in [
        (
            "cached `HIT` vs the pool floor (second line: a pool checkout per request), requests/s",
            ReadTarget::Cached,
            ReadTarget::FloorPool,
            0.9,
        ),
        (
            "cached vs cache-off profile reads, requests/s",
            ReadTarget::Cached,
            ReadTarget::CacheOff,
            5.0,
        ),
        (
            "linkhub `/healthz` vs bare actix-web's, requests/s",
            ReadTarget::Healthz,
            ReadTarget::BareHealthz,
            0.85,
        ),
    ] {
        if let (Some((a, _)), Some((b, _))) = (read_figures(r, target), read_figures(r, reference))
        {
            let share = a.0 / b.0;
            out.push(verdict(
                what,
                &format!("≥ {goal} ×"),
                format!("{:.0} vs {:.0} req/s = {share:.2} ×", a.0, b.0),
                Some(share >= goal),
            ));
        }
    }
    let level = |keys: u64| r.writes.iter().find(|w| w.unrelated_keys == keys);
    if let (Some(zero), Some(million)) = (level(0), level(1_000_000)) {
        let p50 = |w: &WriteLevel| median(w.runs.iter().map(|x| x.p50_us as f64 / 1000.0));
        let (zero_ms, million_ms) = (p50(zero), p50(million));
        let ratio = million_ms / zero_ms;
        out.push(verdict(
            "write p50 with 1M unrelated keys vs 0",
            "≤ 1.1 ×",
            format!("{million_ms:.2} vs {zero_ms:.2} ms = {ratio:.2} ×"),
            Some(ratio <= 1.1),
        ));
    }
    if let Some(zero) = level(0) {
        let base = zero.invalidation.per_write.cpu_us;
        for w in r.writes.iter().filter(|w| w.unrelated_keys >= 1_000_000) {
            let cpu = w.invalidation.per_write.cpu_us;
            let ratio = cpu / base;
            out.push(verdict(
                format!(
                    "Redis CPU per profile write + re-read, {} unrelated keys vs 0",
                    keys_label(w.unrelated_keys)
                ),
                "≤ 2 ×",
                format!(
                    "{:.3} vs {:.3} ms = {ratio:.1} ×",
                    cpu / 1000.0,
                    base / 1000.0
                ),
                Some(ratio <= 2.0),
            ));
        }
    }
    if !r.stampede_one.is_empty() {
        let one_max = r.stampede_one.iter().copied().fold(0.0, f64::max);
        let two_max = r
            .stampede_two
            .iter()
            .map(|(a, b)| a.max(*b))
            .fold(0.0, f64::max);
        out.push(verdict(
            "stampede: PostgreSQL loads per instance for 100 concurrent GETs",
            "1",
            format!(
                "one instance: median {:.0}, max {one_max:.0}; two instances: max {two_max:.0} per instance",
                median(r.stampede_one.iter().copied())
            ),
            Some(one_max <= 1.0 && two_max <= 1.0),
        ));
    }
    if !r.mixed.is_empty() {
        let ratio = median(r.mixed.iter().map(|m| m.server_hit_ratio));
        out.push(verdict(
            "`mixed` profile hit ratio (server, read-backs included)",
            "≥ 90 %",
            format!("{:.1} %", ratio * 100.0),
            Some(ratio >= 0.9),
        ));
        let stale: u64 = r.mixed.iter().map(|m| m.stale_reads).sum();
        let writes: u64 = r.mixed.iter().map(|m| m.writes).sum();
        out.push(verdict(
            "`mixed` stale read-backs",
            "0",
            format!("{stale} in {writes} writes"),
            Some(stale == 0),
        ));
    }
    if !r.rss.is_empty() {
        let peak = median(r.rss.iter().map(|x| x.peak_kib as f64)) / 1024.0;
        out.push(verdict(
            "linkhub resident memory under the `profiles` load (peak; an instance that served reads only)",
            "≤ 64 MiB",
            format!("{peak:.1} MiB"),
            Some(peak <= 64.0),
        ));
    }
    if r.seed_rss_kib > 0 {
        let seeded = r.seed_rss_kib as f64 / 1024.0;
        out.push(verdict(
            format!(
                "linkhub resident memory after serving the seeding ({} registrations)",
                r.users
            ),
            "≤ 64 MiB",
            format!("{seeded:.1} MiB"),
            Some(seeded <= 64.0),
        ));
    }
    out
}

/// `10000000` -> `10M`, `100000` -> `100k`.
pub fn keys_label(keys: u64) -> String {
    match keys {
        0 => "0".to_owned(),
        k if k.is_multiple_of(1_000_000) => format!("{}M", k / 1_000_000),
        k if k.is_multiple_of(1000) => format!("{}k", k / 1000),
        k => k.to_string(),
    }
}

/// A run's figures as the "each repetition" column shows them.
fn each_run(runs: &[WrkResult]) -> String {
    runs.iter()
        .map(|x| {
            format!(
                "{:.0}, {:.2}, {:.2}{}",
                x.rps(),
                x.p50_us as f64 / 1000.0,
                x.p99_us as f64 / 1000.0,
                if x.errors() > 0 {
                    format!(" ({} errors)", x.errors())
                } else {
                    String::new()
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn write(args: &BenchArgs, r: &Results, elapsed: Duration) -> Result<(), String> {
    let mut md = String::new();
    let _ = render(&mut md, args, r, elapsed);
    let path = args.out.join("BENCHMARKS.md");
    std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))
}

fn render(md: &mut String, args: &BenchArgs, r: &Results, elapsed: Duration) -> std::fmt::Result {
    writeln!(md, "# linkhub benchmarks\n")?;
    writeln!(
        md,
        "Written by `{}` on {} in {:.1} minutes, everything on one machine: wrk or goose, \
         linkhub (release build), a private redis-server and PostgreSQL share its cores, so \
         the figures are for comparing with each other, not absolute capacity. Each figure \
         is the median of {} repetitions (each repetition's figures are listed below it). \
         Regenerate with `scripts/bench.sh`.\n",
        args.command,
        utc_now(),
        elapsed.as_secs_f64() / 60.0,
        r.args_reps
    )?;
    writeln!(md, "## Machine\n\n| | |\n|---|---|")?;
    for (k, v) in &r.machine {
        writeln!(md, "| {k} | {v} |")?;
    }
    writeln!(
        md,
        "\nlinkhub runs with its defaults (`WORKERS` = cores, `DB_POOL_SIZE=16`, \
         `REDIS_POOL_SIZE=8`) except `RUST_LOG=warn`: the info level logs one access line \
         per request, which is a cost of logging, not of the cache.\n"
    )?;
    if !r.load.is_empty() {
        writeln!(
            md,
            "The machine is shared with other work (builds, test suites); its load average \
             (1, 5, 15 min) when each part began:\n\n| part | load average |\n|---|---|"
        )?;
        for (part, load) in &r.load {
            writeln!(md, "| {part} | {load} |")?;
        }
        writeln!(md)?;
    }
    writeln!(
        md,
        "## Targets\n\n| target | goal | measured | met |\n|---|---|---|---|"
    )?;
    for v in verdicts(r) {
        writeln!(
            md,
            "| {} | {} | {} | {} |",
            v.what,
            v.goal,
            v.measured,
            match v.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        )?;
    }
    if let Some(seed) = &r.seed {
        writeln!(
            md,
            "\n## Data set\n\n{} users with 5 links and 3 socials each, seeded through the API by \
             `loadtest seed` in {:.0} s ({:.1} users/s; links and socials written with an admin's \
             token, so each user costs one argon2 hash). Every profile body is about {} bytes. \
             The seeding ran through an instance of its own, which held {:.1} MiB resident \
             afterwards{} The instances measured below never hashed a password before the \
             `mixed` runs, whose writers log in.",
            r.users,
            seed.elapsed.as_secs_f64(),
            seed.users_per_second(),
            r.profile_bytes,
            r.seed_rss_kib as f64 / 1024.0,
            if r.seed_rss_kib > 64 * 1024 {
                ": argon2's 19 MiB working blocks, kept by the allocator after the hashes."
            } else {
                "."
            }
        )?;
    }

    writeln!(
        md,
        "\n## 1. Profile reads: cached, cache off, `/healthz`, and their floors\n\n\
         `wrk -t2 -c{} -d{}s` on one profile (`user_00000`). The floor is \
         `loadtest/src/bin/floor.rs`: actix-web answering the same body with one Redis `GET`, \
         no versions, no middleware. The reference for a cached `HIT` is the floor with one \
         multiplexed connection per worker (`FLOOR_CONNECTION=per-worker`: each worker sends \
         every `GET` on a clone of a connection it opened itself, so concurrent requests \
         pipeline on it). The second line is the floor through a deadpool-redis pool of the \
         same size as linkhub's: a checkout is a round trip of its own (its `recycle` sends \
         `UNWATCH` + `PING`) and holds the connection for the whole request, so at most \
         `REDIS_POOL_SIZE` commands are in flight. A third variant opens the pool's \
         connections on the main thread before serving (`FLOOR_PREWARM=8`: every reply then \
         passes through the main thread). linkhub's `/healthz` (its middleware, no I/O) is \
         compared with the floor's bare actix-web `/healthz`.\n\n\
         The Redis columns are Redis's own figures around each run, divided by the requests \
         wrk counted: CPU (`used_cpu_sys` + `used_cpu_user` of `INFO cpu`), commands (`calls` \
         of `INFO commandstats`, the commands a script runs included) and bytes sent to \
         clients (`total_net_output_bytes` of `INFO stats`).\n\n\
         ![reads](bench-reads.png)\n\n\
         | target | requests/s | × its reference | p50 ms | p99 ms | Redis CPU µs / req | Redis commands / req | Redis bytes out / req | each repetition (req/s, p50, p99 ms) |\n|---|---|---|---|---|---|---|---|---|",
        r.connections, r.secs
    )?;
    let reference = |target: ReadTarget| match target {
        ReadTarget::Healthz | ReadTarget::BareHealthz => ReadTarget::BareHealthz,
        _ => ReadTarget::FloorPerWorker,
    };
    for read in &r.reads {
        let (rps, p50, p99) = read_medians(&read.runs);
        let cost = median_cost(&read.redis);
        let share = r
            .read(reference(read.target))
            .map(|base| format!("{:.2}", rps / read_medians(&base.runs).0))
            .unwrap_or_default();
        writeln!(
            md,
            "| {} | {rps:.0} | {share} | {p50:.2} | {p99:.2} | {:.2} | {:.2} | {:.0} | {} |",
            read.target.label(),
            cost.cpu_us,
            cost.commands,
            cost.output_bytes,
            each_run(&read.runs)
        )?;
    }
    let (hits, misses) = r.reads_cache;
    writeln!(
        md,
        "\nDuring the cached runs linkhub counted {hits:.0} profile HITs and {misses:.0} \
         misses (`linkhub_cache_requests_total`)."
    )?;

    let levels: Vec<String> = r
        .writes
        .iter()
        .map(|w| keys_label(w.unrelated_keys))
        .collect();
    writeln!(
        md,
        "\n## 2. Writes as the Redis keyspace grows\n\n\
         At each level, unrelated keys are added to the private Redis by `DEBUG POPULATE` \
         ({} unrelated keys). A bio change bumps the user's, the profile's and the users \
         list's namespaces; the background purger then SCANs for stale entries.\n\n\
         **Latency.** `wrk -t1 -c4 -d{}s` of `PATCH /api/v1/users/{{id}}` (a new bio; 8 users in \
         turn, each with its own token). Redis's cost per write is measured over the runs and \
         until Redis has served no SCAN for a second (the purges the writes queued).\n\n\
         ![writes](bench-writes.png)\n\n\
         | unrelated keys | keys in Redis | writes/s | p50 ms | p99 ms | Redis CPU µs / write | SCAN calls / write | each repetition (writes/s, p50, p99 ms) |\n|---|---|---|---|---|---|---|---|",
        levels.join(", "),
        r.secs
    )?;
    for w in &r.writes {
        writeln!(
            md,
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.2} | {} |",
            w.unrelated_keys,
            w.keys_in_redis,
            median(w.runs.iter().map(WrkResult::rps)),
            median(w.runs.iter().map(|x| x.p50_us as f64 / 1000.0)),
            median(w.runs.iter().map(|x| x.p99_us as f64 / 1000.0)),
            w.redis_per_write.cpu_us,
            w.redis_per_write.scans,
            each_run(&w.runs)
        )?;
    }
    writeln!(
        md,
        "\n**Invalidation cost.** One user changes its bio {} times, one write at a time, each \
         followed by a `GET` of its profile, which misses and re-caches it; then the run waits \
         until Redis has served no SCAN for a second, or only a janitor's budgeted SCAN steps \
         (at most 50 a second and no other command). Redis's CPU over all of it, less its idle \
         CPU over the same time (measured for 2 s just before), divided by the writes. A \
         janitor walking through the idle window (after the latency runs' writes) is part of \
         that idle CPU: its SCAN calls and CPU per second there are listed apart.\n\n\
         | unrelated keys | keys in Redis | writes | re-reads that missed | Redis CPU ms / write | × at 0 keys | SCAN calls / write | SCAN CPU ms / write | Redis commands / write | Redis bytes out / write | seconds | idle before: SCAN calls / s, SCAN CPU ms / s |\n|---|---|---|---|---|---|---|---|---|---|---|---|",
        r.writes.first().map_or(0, |w| w.invalidation.writes)
    )?;
    let base = r.writes.first().map(|w| w.invalidation.per_write.cpu_us);
    for w in &r.writes {
        let inv = &w.invalidation;
        writeln!(
            md,
            "| {} | {} | {} | {} | {:.3} | {} | {:.2} | {:.3} | {:.1} | {:.0} | {:.1} | {:.1}, {:.3} |",
            w.unrelated_keys,
            w.keys_in_redis,
            inv.writes,
            inv.misses,
            inv.per_write.cpu_us / 1000.0,
            base.map(|b| format!("{:.1}", inv.per_write.cpu_us / b))
                .unwrap_or_default(),
            inv.per_write.scans,
            inv.per_write.scan_cpu_us / 1000.0,
            inv.per_write.commands,
            inv.per_write.output_bytes,
            inv.seconds,
            inv.idle_per_sec.scans,
            inv.idle_per_sec.scan_cpu_us / 1000.0
        )?;
    }

    writeln!(
        md,
        "\n## 3. Stampede\n\n\
         The owner of `user_00000` changes its bio; as soon as the `PATCH` answers, 100 \
         concurrent `GET /api/v1/profiles/user_00000` go out over connections opened \
         beforehand. PostgreSQL loads are the difference of \
         `linkhub_cache_loads_total{{namespace=\"profile\"}}` around the burst. With two \
         instances (same PostgreSQL and Redis), 50 GETs go to each.\n\n\
         | repetition | one instance: loads | two instances: loads (a + b) |\n|---|---|---|"
    )?;
    for (i, (one, (a, b))) in r.stampede_one.iter().zip(&r.stampede_two).enumerate() {
        writeln!(md, "| {} | {one:.0} | {a:.0} + {b:.0} |", i + 1)?;
    }

    writeln!(
        md,
        "\n## 4. Hit ratio under `mixed`, and other users' hits after a write\n\n\
         goose `mixed` (32 users, {} s): 95 % profile reads drawn Zipf-like over the {} users, \
         5 % writes (bio, add or delete a link, a social's URL) by logged-in users, each read \
         back at once. The server ratio is the profile namespace's HITs over all its reads \
         from `/metrics` (the read-backs, which follow an invalidation and so miss by \
         design, included); the client ratio counts `X-Cache` on the plain reads only.\n\n\
         | repetition | server hit ratio | client hit ratio | writes | stale read-backs | profile reads |\n|---|---|---|---|---|---|",
        r.load_secs, r.users
    )?;
    for (i, m) in r.mixed.iter().enumerate() {
        writeln!(
            md,
            "| {} | {:.2} % | {:.2} % | {} | {} | {:.0} |",
            i + 1,
            m.server_hit_ratio * 100.0,
            m.client_hit_ratio * 100.0,
            m.writes,
            m.stale_reads,
            m.requests
        )?;
    }
    writeln!(
        md,
        "| median | {:.2} % | {:.2} % | | | |",
        median(r.mixed.iter().map(|m| m.server_hit_ratio)) * 100.0,
        median(r.mixed.iter().map(|m| m.client_hit_ratio)) * 100.0
    )?;
    writeln!(
        md,
        "\nOther users' cached profiles after one user's writes: 200 profiles read (cached), \
         then one user changes its bio, adds and deletes a link and changes a social, then \
         the 200 are read again.\n\n| repetition | still HIT |\n|---|---|"
    )?;
    for (i, (hits, total)) in r.kept.iter().enumerate() {
        writeln!(md, "| {} | {hits} of {total} |", i + 1)?;
    }

    writeln!(
        md,
        "\n## 5. Resident memory under the `profiles` load\n\n\
         goose `profiles` (64 users, {} s, Zipf-like over {} users) against the cached \
         instance; `VmRSS` of the linkhub process sampled every 250 ms.\n\n\
         ![rss](bench-rss.png)\n\n\
         | repetition | RSS before (MiB) | peak RSS (MiB) | profile reads |\n|---|---|---|---|",
        r.load_secs, r.users
    )?;
    for (i, x) in r.rss.iter().enumerate() {
        writeln!(
            md,
            "| {} | {:.1} | {:.1} | {} |",
            i + 1,
            x.idle_kib as f64 / 1024.0,
            x.peak_kib as f64 / 1024.0,
            x.profile_reads
        )?;
    }
    writeln!(
        md,
        "\n## Commands\n\n```sh\nscripts/bench.sh                  # builds, then runs: {}\n\
         # the same, by hand:\nCARGO_TARGET_DIR=/var/tmp/linkhub-target cargo build --release --workspace\n\
         /var/tmp/linkhub-target/release/loadtest bench --users {} --reps {} --secs {} --load-secs {} \\\n  --keyspaces {} --invalidation-writes {}\n```",
        args.command,
        r.users,
        r.args_reps,
        r.secs,
        r.load_secs,
        args.keyspaces
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.invalidation_writes
    )?;
    Ok(())
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
