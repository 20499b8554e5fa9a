//! docs/BENCHMARKS.md from a run's [`Results`]: the machine, the commands,
//! the targets with their verdicts, then every comparison with its medians
//! and each repetition's figures.

use std::fmt::Write as _;
use std::time::Duration;

use super::{BenchArgs, Results};
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

/// One target line: what, goal, measured, verdict.
pub struct Verdict {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

pub fn verdicts(r: &Results) -> Vec<Verdict> {
    let mut out = Vec::new();
    let find = |prefix: &str| {
        r.reads
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, runs)| read_medians(runs))
    };
    if let (Some(cached), Some(off), Some(floor)) = (
        find("linkhub, cached"),
        find("linkhub, cache off"),
        find("floor:"),
    ) {
        let share = cached.0 / floor.0;
        out.push(Verdict {
            what: "cached profile reads vs the floor, requests/s".into(),
            goal: "≥ 90 % of the floor".into(),
            measured: format!(
                "{:.0} vs {:.0} req/s = {:.0} %",
                cached.0,
                floor.0,
                share * 100.0
            ),
            met: share >= 0.9,
        });
        let ratio = cached.2 / floor.2;
        out.push(Verdict {
            what: "cached profile reads vs the floor, p99".into(),
            goal: "≤ 1.2 × the floor's".into(),
            measured: format!("{:.2} vs {:.2} ms = {ratio:.2} ×", cached.2, floor.2),
            met: ratio <= 1.2,
        });
        let speedup = cached.0 / off.0;
        out.push(Verdict {
            what: "cached vs cache-off profile reads, requests/s".into(),
            goal: "≥ 5 ×".into(),
            measured: format!("{:.0} vs {:.0} req/s = {speedup:.1} ×", cached.0, off.0),
            met: speedup >= 5.0,
        });
    }
    let p50_at = |keys: u64| {
        r.writes
            .iter()
            .find(|(k, _, _)| *k == keys)
            .map(|(_, runs, _)| median(runs.iter().map(|x| x.p50_us as f64 / 1000.0)))
    };
    if let (Some(zero), Some(million)) = (p50_at(0), p50_at(1_000_000)) {
        let ratio = million / zero;
        out.push(Verdict {
            what: "write p50 with 1M unrelated keys vs 0".into(),
            goal: "≤ 1.1 ×".into(),
            measured: format!("{million:.2} vs {zero:.2} ms = {ratio:.2} ×"),
            met: ratio <= 1.1,
        });
    }
    if !r.stampede_one.is_empty() {
        let one_max = r.stampede_one.iter().copied().fold(0.0, f64::max);
        let two_max = r
            .stampede_two
            .iter()
            .map(|(a, b)| a.max(*b))
            .fold(0.0, f64::max);
        out.push(Verdict {
            what: "stampede: PostgreSQL loads per instance for 100 concurrent GETs".into(),
            goal: "1".into(),
            measured: format!(
                "one instance: median {:.0}, max {one_max:.0}; two instances: max {two_max:.0} per instance",
                median(r.stampede_one.iter().copied())
            ),
            met: one_max <= 1.0 && two_max <= 1.0,
        });
    }
    if !r.mixed.is_empty() {
        let ratio = median(r.mixed.iter().map(|m| m.server_hit_ratio));
        out.push(Verdict {
            what: "`mixed` profile hit ratio (server, read-backs included)".into(),
            goal: "≥ 90 %".into(),
            measured: format!("{:.1} %", ratio * 100.0),
            met: ratio >= 0.9,
        });
        let stale: u64 = r.mixed.iter().map(|m| m.stale_reads).sum();
        let writes: u64 = r.mixed.iter().map(|m| m.writes).sum();
        out.push(Verdict {
            what: "`mixed` stale read-backs".into(),
            goal: "0".into(),
            measured: format!("{stale} in {writes} writes"),
            met: stale == 0,
        });
    }
    if !r.rss.is_empty() {
        let peak = median(r.rss.iter().map(|x| x.peak_kib as f64)) / 1024.0;
        out.push(Verdict {
            what: "linkhub resident memory under the `profiles` load (peak; an instance that served reads only)".into(),
            goal: "≤ 64 MiB".into(),
            measured: format!("{peak:.1} MiB"),
            met: peak <= 64.0,
        });
    }
    if r.seed_rss_kib > 0 {
        let seeded = r.seed_rss_kib as f64 / 1024.0;
        out.push(Verdict {
            what: format!(
                "linkhub resident memory after serving the seeding ({} registrations)",
                r.users
            ),
            goal: "≤ 64 MiB".into(),
            measured: format!("{seeded:.1} MiB"),
            met: seeded <= 64.0,
        });
    }
    out
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
            if v.met { "yes" } else { "**no**" }
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
        "\n## 1. Profile reads: cached, cache off, `/healthz`, and the floor\n\n\
         `wrk -t2 -c{} -d{}s` on one profile (`user_00000`). The floor is \
         `loadtest/src/bin/floor.rs`: actix-web answering the same body with one Redis `GET` \
         through a deadpool-redis pool of the same size, no versions, no middleware; the \
         targets' goals compare with it. Two variants of it show where a cached read's time \
         goes: with the pool's connections opened on the main thread before serving \
         (`FLOOR_PREWARM=8`: every reply then passes through the main thread), and without \
         the pool (`FLOOR_CONNECTION=per-worker`: each worker sends every `GET` on a clone of \
         one multiplexed connection it opened itself). A deadpool-redis checkout is a round \
         trip of its own (its `recycle` sends `UNWATCH` + `PING`) and holds the connection \
         for the whole request, so at most `REDIS_POOL_SIZE` commands are in flight; without \
         it, concurrent requests pipeline on one connection.\n\n\
         ![reads](bench-reads.png)\n\n\
         | target | requests/s | p50 ms | p99 ms | each repetition (req/s, p50, p99 ms) |\n|---|---|---|---|---|",
        r.connections, r.secs
    )?;
    for (name, runs) in &r.reads {
        let (rps, p50, p99) = read_medians(runs);
        let each: Vec<String> = runs
            .iter()
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
            .collect();
        writeln!(
            md,
            "| {name} | {rps:.0} | {p50:.2} | {p99:.2} | {} |",
            each.join("; ")
        )?;
    }
    let (hits, misses) = r.reads_cache;
    writeln!(
        md,
        "\nDuring the cached runs linkhub counted {hits:.0} profile HITs and {misses:.0} \
         misses (`linkhub_cache_requests_total`)."
    )?;

    writeln!(
        md,
        "\n## 2. Write latency as the Redis keyspace grows\n\n\
         `wrk -t1 -c4 -d{}s` of `PATCH /api/v1/users/{{id}}` (a new bio; 8 users in turn, \
         each with its own token) with 0, 100,000 and 1,000,000 unrelated keys added to the \
         private Redis by `DEBUG POPULATE`. A bio change bumps the user's, the profile's and \
         the users list's namespaces; the background purger then SCANs for stale entries.\n\n\
         ![writes](bench-writes.png)\n\n\
         | unrelated keys | writes/s | p50 ms | p99 ms | SCAN calls per write | each repetition (writes/s, p50, p99 ms) |\n|---|---|---|---|---|---|",
        r.secs
    )?;
    for (keys, runs, scans) in &r.writes {
        let each: Vec<String> = runs
            .iter()
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
            .collect();
        writeln!(
            md,
            "| {keys} | {:.0} | {:.2} | {:.2} | {scans:.2} | {} |",
            median(runs.iter().map(WrkResult::rps)),
            median(runs.iter().map(|x| x.p50_us as f64 / 1000.0)),
            median(runs.iter().map(|x| x.p99_us as f64 / 1000.0)),
            each.join("; ")
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
         /var/tmp/linkhub-target/release/loadtest bench --users {} --reps {} --secs {} --load-secs {}\n```",
        args.command, r.users, r.args_reps, r.secs, r.load_secs
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
