//! Model checking of the cache-invalidation protocol — failovers of a shard
//! with one or two replicas, restarts from a snapshot and the cache epoch
//! that guards them, a cache-off instance — : `model.rs` is the protocol,
//! these tests explore it exhaustively with `stateright`'s breadth-first
//! search. The correct protocol must have no counterexample; each variant
//! with a known bug must have one, so the model can fail.
//! `docs/protocol-model.md` explains the model, its bounds and the traces.
//! Run with `cargo test --test protocol_model -- --nocapture` to see the
//! state counts, times and counterexamples.

mod model;

use std::collections::BTreeSet;
use std::time::Instant;

use model::{
    A_CACHE_OFF_BUMP_DELIVERED_BY_THE_OTHER, A_FAILOVER, A_HIT, A_HIT_AFTER_A_FAILOVER_REPLAY,
    A_HIT_AFTER_AN_EPOCH_MOVE, A_REPEAT_AFTER_A_CLOCK_WENT_BEHIND, A_REPLAY_AFTER_FAILOVER,
    A_RESTORE, AN_EPOCH_MOVE, Action, Bounds, Clocks, FRESH_READS, FRESH_READS_IN_NOTIFY_WINDOW,
    Protocol, State, VERSIONS_NEVER_REPEAT, Variant,
};
use stateright::{Checker, HasDiscoveries, Model, Path};

/// Nothing happens unless a run's bounds say so.
const NONE: Bounds = Bounds {
    writes: 0,
    reads: 0,
    replicas: 0,
    failovers: 0,
    restores: 0,
    counter_losses: 0,
    outages: 0,
    purges: 0,
    replays: 0,
    cache_off: false,
    clocks: Clocks::Ahead,
};

/// One write and two reads on a shard with one replica, one failover with
/// a replay on the new master: the failover that could lose an
/// acknowledged bump. The new master's clock is ahead of every version
/// handed out: the assumption `max(counter + 1, TIME)` rests on (see
/// [`a_new_master_with_its_clock_behind_serves_old_rows`]).
const FAILOVER: Bounds = Bounds {
    writes: 1,
    reads: 2,
    replicas: 1,
    failovers: 1,
    replays: 1,
    ..NONE
};

/// One write and two reads on a shard with two replicas and one failover,
/// to either replica (clocks ahead, as in [`FAILOVER`]).
const TWO_REPLICAS: Bounds = Bounds {
    writes: 1,
    reads: 2,
    replicas: 2,
    failovers: 1,
    replays: 1,
    ..NONE
};

/// One write and two reads; the master (no replica) may `SAVE` once and
/// restart once, from that snapshot or, without one, empty; its clock may
/// come back behind what it lost.
const RESTORE: Bounds = Bounds {
    writes: 1,
    reads: 2,
    restores: 1,
    replays: 1,
    clocks: Clocks::MayBeBehind,
    ..NONE
};

/// One write and three reads and a restart (clock behind):
/// enough for a read's store to straddle the epoch move.
const STORE_ACROSS_A_MOVE: Bounds = Bounds {
    writes: 1,
    reads: 3,
    restores: 1,
    clocks: Clocks::MayBeBehind,
    ..NONE
};

/// Two writes and two reads with instance 1 running with the cache off
/// (it writes, never reads the cache) and one outage (either instance cut
/// off from Redis: its bumps are owed).
const CACHE_OFF: Bounds = Bounds {
    writes: 2,
    reads: 2,
    outages: 1,
    replays: 1,
    cache_off: true,
    ..NONE
};

/// One write and two reads on a shard with one replica, with a counter
/// loss, an instance cut off from Redis (the other keeps it: the NOTIFY
/// path) and a purge.
const FAULTS: Bounds = Bounds {
    writes: 1,
    reads: 2,
    replicas: 1,
    counter_losses: 1,
    outages: 1,
    purges: 1,
    replays: 1,
    ..NONE
};

/// `PROTOCOL_MODEL_BOUNDS`, e.g. `writes=3,restores=1,clocks=ahead`,
/// replaces those bounds in every run (to explore further by hand). Names:
/// writes, reads, replicas, failovers, restores, losses, outages, purges,
/// replays (small integers), cache_off (0/1), clocks (ahead/behind).
fn bounds(default: Bounds) -> Bounds {
    let Ok(spec) = std::env::var("PROTOCOL_MODEL_BOUNDS") else {
        return default;
    };
    let mut b = default;
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .unwrap_or_else(|| panic!("PROTOCOL_MODEL_BOUNDS: {item:?} is not name=value"));
        let n = || -> u8 {
            value
                .parse()
                .unwrap_or_else(|_| panic!("PROTOCOL_MODEL_BOUNDS: {item:?}: a small integer"))
        };
        match name {
            "writes" => b.writes = n(),
            "reads" => b.reads = n(),
            "replicas" => b.replicas = n(),
            "failovers" => b.failovers = n(),
            "restores" => b.restores = n(),
            "losses" => b.counter_losses = n(),
            "outages" => b.outages = n(),
            "purges" => b.purges = n(),
            "replays" => b.replays = n(),
            "cache_off" => b.cache_off = n() != 0,
            "clocks" => {
                b.clocks = match value {
                    "ahead" => Clocks::Ahead,
                    "behind" => Clocks::MayBeBehind,
                    _ => panic!("PROTOCOL_MODEL_BOUNDS: clocks=ahead or clocks=behind"),
                }
            }
            _ => panic!("PROTOCOL_MODEL_BOUNDS: unknown bound {name:?}"),
        }
    }
    assert!(
        usize::from(b.failovers + b.restores) < model::EPOCHS,
        "PROTOCOL_MODEL_BOUNDS: at most {} failovers and restores together",
        model::EPOCHS - 1
    );
    assert!(
        usize::from(b.replicas) <= model::MAX_REPLICAS,
        "PROTOCOL_MODEL_BOUNDS: at most {} replicas",
        model::MAX_REPLICAS
    );
    b
}

/// Checker threads: `PROTOCOL_MODEL_THREADS`, else every core there is.
fn threads() -> usize {
    std::env::var("PROTOCOL_MODEL_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Explores `variant` until every property in `until` has a discovery, or
/// exhaustively when one never comes.
fn check(variant: Variant, bounds: Bounds, until: HasDiscoveries) -> impl Checker<Protocol> {
    let started = Instant::now();
    let checker = Protocol { variant, bounds }
        .checker()
        .threads(threads())
        .finish_when(until)
        .spawn_bfs()
        .join();
    println!(
        "{variant:?} within {bounds:?}: {} states generated, {} unique, max depth {}, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    checker
}

fn print_trace(variant: Variant, property: &str, path: Path<State, Action>) {
    let last = path.last_state().clone();
    let actions = path.into_actions();
    println!(
        "{variant:?} violates \"{property}\" in {} steps:",
        actions.len()
    );
    for (n, action) in actions.iter().enumerate() {
        println!("  {:>2}. {action:?}", n + 1);
    }
    let reads: Vec<_> = last.reads.iter().map(|r| &r.step).collect();
    let keys: Vec<_> = (1..=last.epoch)
        .map(|e| &last.shard.master.epochs[usize::from(e - 1)])
        .collect();
    println!(
        "  then: db={} epoch={} master run {} keys per epoch={keys:?} outbox={:#b} reads={reads:?}",
        last.db, last.epoch, last.shard.run, last.outbox
    );
}

/// A broken variant: the checker must find a counterexample to each of `violated`.
fn assert_counterexamples(variant: Variant, bounds: Bounds, violated: &[&'static str]) {
    let until = HasDiscoveries::AllOf(violated.iter().copied().collect::<BTreeSet<_>>());
    let checker = check(variant, self::bounds(bounds), until);
    for &property in violated {
        let path = checker.assert_any_discovery(property);
        print_trace(variant, property, path);
    }
}

/// Explores the correct protocol exhaustively within `bounds`: no
/// counterexample, and the `sometimes` properties `reached` are reached.
fn assert_correct(bounds: Bounds, reached: &[&'static str]) -> impl Checker<Protocol> {
    let checker = check(Variant::Correct, self::bounds(bounds), HasDiscoveries::All);
    assert!(checker.is_done());
    for property in [FRESH_READS, VERSIONS_NEVER_REPEAT] {
        if let Some(path) = checker.discovery(property) {
            print_trace(Variant::Correct, property, path);
            panic!("the correct protocol violates \"{property}\"");
        }
    }
    for &property in reached {
        let steps = checker.assert_any_discovery(property).into_actions().len();
        println!("Correct: \"{property}\" reached in {steps} steps");
    }
    checker
}

#[test]
fn the_protocol_survives_failovers() {
    assert_correct(
        FAILOVER,
        &[
            A_HIT,
            A_FAILOVER,
            AN_EPOCH_MOVE,
            A_REPLAY_AFTER_FAILOVER,
            A_HIT_AFTER_A_FAILOVER_REPLAY,
        ],
    );
}

/// 3.2 million states, minutes: run by hand (`-- --ignored`); in CI the
/// two-replica shard is explored by the `WAIT 1` variant's search.
#[test]
#[ignore = "minutes: run by hand (docs/protocol-model.md)"]
fn the_protocol_survives_failovers_with_two_replicas() {
    assert_correct(
        TWO_REPLICAS,
        &[A_HIT, A_FAILOVER, AN_EPOCH_MOVE, A_HIT_AFTER_AN_EPOCH_MOVE],
    );
}

#[test]
fn the_protocol_survives_restarts_from_a_snapshot() {
    assert_correct(
        RESTORE,
        &[
            A_HIT,
            A_RESTORE,
            AN_EPOCH_MOVE,
            A_HIT_AFTER_AN_EPOCH_MOVE,
            A_REPEAT_AFTER_A_CLOCK_WENT_BEHIND,
        ],
    );
}

#[test]
fn the_protocol_survives_a_cache_off_instance() {
    assert_correct(CACHE_OFF, &[A_HIT, A_CACHE_OFF_BUMP_DELIVERED_BY_THE_OTHER]);
}

#[test]
fn the_protocol_survives_losses_outages_and_purges() {
    let checker = assert_correct(FAULTS, &[A_HIT]);
    // The window docs/RUNNING.md documents is real in the model too: a read on the
    // other instance before it handled the NOTIFY of an owed bump.
    let window = checker.assert_any_discovery(FRESH_READS_IN_NOTIFY_WINDOW);
    let notify_pending_at_start = window.clone().into_vec().iter().any(|(state, _)| {
        state
            .writes
            .iter()
            .any(|w| w.notify_pending.iter().any(|&p| p))
    });
    assert!(
        notify_pending_at_start,
        "the window needs an unhandled NOTIFY"
    );
    print_trace(Variant::Correct, FRESH_READS_IN_NOTIFY_WINDOW, window);
}

#[test]
fn bumping_before_the_commit_serves_old_rows() {
    assert_counterexamples(Variant::BumpBeforeCommit, FAULTS, &[FRESH_READS]);
}

#[test]
fn a_bump_counted_without_the_replica_is_lost_by_a_failover() {
    assert_counterexamples(Variant::BumpCountedWithoutReplica, FAILOVER, &[FRESH_READS]);
}

#[test]
fn a_counter_recreated_from_zero_reopens_old_entries() {
    assert_counterexamples(
        Variant::CounterRecreatedFromZero,
        FAULTS,
        &[VERSIONS_NEVER_REPEAT, FRESH_READS],
    );
}

/// The old `BUMP` (`INCR`) hands out again, after a failover, the versions
/// the old master had handed out.
#[test]
fn incr_after_a_failover_reissues_versions() {
    assert_counterexamples(
        Variant::IncrOnExistingCounter,
        FAILOVER,
        &[VERSIONS_NEVER_REPEAT],
    );
}

/// `WAIT 1` with two replicas: the failover promotes the replica that did
/// not acknowledge (what `store/bumps.rs` sends today).
#[test]
fn waiting_for_one_of_two_replicas_loses_bumps_in_a_failover() {
    assert_counterexamples(Variant::WaitForOneReplica, TWO_REPLICAS, &[FRESH_READS]);
}

#[test]
fn without_the_restart_guard_a_snapshot_serves_old_entries() {
    assert_counterexamples(Variant::NoRestartGuard, RESTORE, &[FRESH_READS]);
}

/// A restarted Redis that serves an instance before it noticed the restart
/// (what the cluster client's silent reconnect allows today).
#[test]
fn a_restart_served_before_it_is_noticed_serves_old_entries() {
    assert_counterexamples(Variant::RestartServedBeforeNoticed, RESTORE, &[FRESH_READS]);
}

#[test]
fn a_cache_off_instance_that_drops_its_rows_leaves_old_entries() {
    assert_counterexamples(Variant::CacheOffDropsRows, CACHE_OFF, &[FRESH_READS]);
}

#[test]
fn without_bumps_to_the_previous_epoch_a_late_instance_serves_old_entries() {
    assert_counterexamples(Variant::NoPreviousEpochBump, FAILOVER, &[FRESH_READS]);
}

/// A read that took its version before an epoch move stores its entry under
/// the new epoch when `store_entry` builds its keys with the epoch of now
/// (what the code does today); once a clock came back behind, the new
/// epoch's counter can hold that very version, and the old row is served.
#[test]
fn storing_under_the_epoch_of_now_serves_old_rows_after_a_restart() {
    assert_counterexamples(
        Variant::StoreUnderTheEpochOfNow,
        STORE_ACROSS_A_MOVE,
        &[FRESH_READS],
    );
}

/// The clock assumption, tested: after a failover to a master whose clock is
/// behind the versions the old master handed out (and it lacks), an
/// instance that has not noticed the failover yet still reads the old
/// epoch, where the replay's bump to the previous epoch re-issues a version
/// a reader took from the old master; the reader's old row is stored under
/// it and served. 16 steps: the search takes minutes (about 7 million
/// states), so it runs by hand: `cargo test --test protocol_model --
/// --ignored`.
#[test]
#[ignore = "minutes: run by hand (docs/protocol-model.md)"]
fn a_new_master_with_its_clock_behind_serves_old_rows() {
    assert_counterexamples(
        Variant::Correct,
        Bounds {
            clocks: Clocks::MayBeBehind,
            ..FAILOVER
        },
        &[FRESH_READS],
    );
}
