//! A model of the cache-invalidation protocol (the rules of
//! `src/cache/mod.rs`, the cache epoch of `cache/epoch.rs` and `db::epoch`,
//! the outbox of `db::outbox`, replicated shards, failovers and restarts from
//! a snapshot), small enough for `stateright` to explore every interleaving
//! within its bounds.
//!
//! One namespace with one cached query; two instances (the second may run
//! with the cache off); one Redis shard (a master and zero, one or two
//! replicas, each holding a prefix of the master's writes; a snapshot the
//! master may restart from); PostgreSQL holding the row, the outbox and the
//! cache epoch with the Redis run it was trusted on. The row's value is the
//! number of committed writes, so "older data" is a smaller number.
//!
//! Every action names the code it stands for. Steps that the code runs one
//! after another without observable effect in between are one action here
//! (noted where it happens); an action never hides an interleaving the
//! properties could tell apart.
//!
//! When the code changes its protocol, this model changes in the same commit.

use stateright::{Model, Property};

/// Instances of the service sharing PostgreSQL and the Redis shard.
pub const INSTANCES: usize = 2;
/// Cache epochs the keys may carry: the first, and one move per failover or
/// restart (`linkhub_cache_trust_runs` moves it at most once per new run).
pub const EPOCHS: usize = 4;
/// Replicas a shard may have.
pub const MAX_REPLICAS: usize = 2;

/// Which protocol the model runs: the correct one, or one with a known bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The protocol as it must be: rules 1–4 on a replicated shard, a bump
    /// counts once *every* replica the instance's topology lists has it
    /// (`WAIT <live replicas>`), owed bumps are replayed, bumps set the
    /// counter to `max(counter + 1, TIME)`, the epoch moves when the Redis
    /// run changed, and an instance's first command to a restarted Redis
    /// fails (its connection was to the process that died), so it notices
    /// the restart before that Redis serves it anything.
    Correct,
    /// Breaks rule 2: the counter is bumped before the write commits.
    BumpBeforeCommit,
    /// A bump counts as soon as the master took it, without `WAIT`.
    BumpCountedWithoutReplica,
    /// Breaks rule 3: a missing counter comes back as 0 (and a bump makes it 1).
    CounterRecreatedFromZero,
    /// The `BUMP` script as it was before bumps took the Redis clock: `INCR`.
    IncrOnExistingCounter,
    /// `WAIT 1` whatever the number of replicas: what `store/bumps.rs`
    /// sends today. With two replicas, a failover may promote the one that
    /// did not acknowledge.
    WaitForOneReplica,
    /// Without the restart guard: `linkhub_cache_trust_runs` records the new
    /// run but never moves the epoch, so what a snapshot brought back is
    /// trusted once the outbox is replayed.
    NoRestartGuard,
    /// The cache-off instance (`CACHE_ENABLED=false`) drops its writes'
    /// outbox rows instead of bumping: "cache off" read as "do not invalidate".
    CacheOffDropsRows,
    /// A restarted Redis may serve an instance before it noticed the
    /// restart: the cluster client reconnects and retries on its own
    /// (`RetryMethod::Reconnect`), and on a single node a thread whose
    /// connection a swallowed error dropped opens a fresh one; either way no
    /// error reaches the cache, and only the topology watch (each second,
    /// run ids) notices. What the code does today.
    RestartServedBeforeNoticed,
    /// For 10 s after a move, bumps do not also go to the previous epoch.
    NoPreviousEpochBump,
    /// `Store::store_entry` builds its keys with the epoch of when it runs,
    /// not the epoch of the lookup the version came from (what the code does
    /// today): after a move, `STORE` compares a version of the old epoch
    /// with the new epoch's counter.
    StoreUnderTheEpochOfNow,
}

/// How the clock of a new master (promoted, or restarted from a snapshot)
/// relates to the versions the old one handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Clocks {
    /// Ahead of every version ever handed out (the assumption
    /// `max(counter + 1, TIME)` makes: clocks agree within a failover's time).
    Ahead,
    /// Either ahead, or behind every version the new master lacks (it is only
    /// past the versions it holds): a clock stepped back, a restore on
    /// another machine.
    MayBeBehind,
}

/// How much of each thing may happen in one run: what makes the search finite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bounds {
    pub writes: u8,
    pub reads: u8,
    /// Replicas of the shard at the start (0–2).
    pub replicas: u8,
    pub failovers: u8,
    /// Restarts from the snapshot (each may follow one `SAVE`).
    pub restores: u8,
    pub counter_losses: u8,
    /// Times an instance is cut off from Redis.
    pub outages: u8,
    pub purges: u8,
    /// Outbox replays that bump (each hands out a version).
    pub replays: u8,
    /// Instance 1 runs with `CACHE_ENABLED=false`.
    pub cache_off: bool,
    pub clocks: Clocks,
}

/// The model checked by `stateright`.
pub struct Protocol {
    pub variant: Variant,
    pub bounds: Bounds,
}

/// How a read was served (`X-Cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Served {
    Hit,
    Miss,
    Bypass,
}

/// The keys of the namespace under one epoch: the counter and the entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Keys {
    /// `<prefix>:e<epoch>:ver:{ns}`; `None` when missing (never set, evicted, expired).
    pub counter: Option<u8>,
    /// `<prefix>:e<epoch>:{ns}:<version>:…` → the row's value it was loaded with; sorted by version.
    pub entries: Vec<(u8, u8)>,
}

/// One Redis node's keys of the namespace, per epoch (index = epoch - 1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Node {
    pub epochs: [Keys; EPOCHS],
}

/// A write on the master, shipped to the replicas in order (Redis replication).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Counter { epoch: u8, value: Option<u8> },
    Put { epoch: u8, version: u8, data: u8 },
    Unlink { epoch: u8, version: u8 },
}

impl Node {
    fn keys(&self, epoch: u8) -> &Keys {
        &self.epochs[usize::from(epoch - 1)]
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Counter { epoch, value } => self.epochs[usize::from(epoch - 1)].counter = value,
            Op::Put {
                epoch,
                version,
                data,
            } => {
                let entries = &mut self.epochs[usize::from(epoch - 1)].entries;
                match entries.binary_search_by_key(&version, |e| e.0) {
                    Ok(i) => entries[i].1 = data,
                    Err(i) => entries.insert(i, (version, data)),
                }
            }
            Op::Unlink { epoch, version } => self.epochs[usize::from(epoch - 1)]
                .entries
                .retain(|e| e.0 != version),
        }
    }

    fn entry(&self, epoch: u8, version: u8) -> Option<u8> {
        self.keys(epoch)
            .entries
            .iter()
            .find(|e| e.0 == version)
            .map(|&(_, data)| data)
    }

    /// The highest version any of its keys holds: what its clock is past.
    fn highest(&self) -> u8 {
        self.epochs
            .iter()
            .flat_map(|k| k.counter.into_iter().chain(k.entries.iter().map(|e| e.0)))
            .max()
            .unwrap_or(0)
    }
}

/// A replica: its keys and how many of the master's writes it applied.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    pub node: Node,
    pub applied: u8,
}

/// The shard: a master, its replicas, and the writes not every replica has.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    pub master: Node,
    pub replicas: Vec<Replica>,
    /// The master's writes from `base` on (position `base + i + 1`), the
    /// ones some replica lacks.
    pub log: Vec<Op>,
    pub base: u8,
    /// Which Redis process is the master (its `run_id`): a failover or a
    /// restart makes a new one.
    pub run: u8,
    /// The master's clock: what `TIME` gives next.
    pub clock: u8,
    /// What the master restarts from: the last `SAVE` (at first, nothing:
    /// a restart without persistence comes back empty).
    pub snapshot: Node,
    /// The master is a process that restarted (not a promoted replica).
    pub restarted: bool,
}

impl Shard {
    /// Applies `op` on the master; answers its position for `WAIT`.
    fn write(&mut self, op: Op) -> u8 {
        self.master.apply(op);
        if self.replicas.is_empty() {
            self.base += 1;
        } else {
            self.log.push(op);
        }
        self.base + self.log.len() as u8
    }

    /// Replication ships the master's writes up to `pos` to replica `r`.
    fn ship(&mut self, r: usize, pos: u8) {
        let replica = &mut self.replicas[r];
        while replica.applied < pos {
            let op = self.log[usize::from(replica.applied - self.base)];
            replica.node.apply(op);
            replica.applied += 1;
        }
        let oldest = self.replicas.iter().map(|r| r.applied).min().unwrap_or(0);
        self.log.drain(..usize::from(oldest - self.base));
        self.base = oldest;
    }

    /// Replicas that have the master's write `pos` of run `run`.
    fn acks(&self, run: u8, pos: u8) -> usize {
        if run != self.run {
            return 0;
        }
        self.replicas.iter().filter(|r| r.applied >= pos).count()
    }

    /// A new master process holding `node`; the replicas resync from it.
    fn new_master(&mut self, node: Node, replicas: usize) {
        self.master = node;
        self.replicas = vec![
            Replica {
                node: self.master.clone(),
                applied: 0,
            };
            replicas
        ];
        self.log.clear();
        self.base = 0;
        self.run += 1;
    }
}

/// What one instance's breaker, owed set, epoch, topology view and recovery task hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instance {
    /// `Breaker::lets_through`: reads may use Redis.
    pub closed: bool,
    /// `OwedBumps::is_owed` for the namespace: the sequence number of the last
    /// `OwedBumps::owe`, so that `OwedBumps::settle` clears only what a replay covered.
    pub owed: Option<u8>,
    pub owe_sequence: u8,
    /// `CacheEpoch::get`: the epoch its keys carry.
    pub epoch: u8,
    /// `CacheEpoch::bumped` still includes the previous epoch (10 s after a move).
    pub recent_move: bool,
    /// The Redis run its topology view (`Store::refresh_topology`) last saw.
    pub seen_run: u8,
    /// Live replicas in that view (`Topology::has_live_replica`, and what
    /// `WAIT` must count in the correct protocol).
    pub seen_replicas: u8,
    pub recovery: Recovery,
}

/// Where `cache::recovery::Recovery::settle_owed` is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Recovery {
    Idle,
    /// Replayed the outbox rows `rows` (a bit per write), now `WAIT`s for
    /// `need` replicas to have write `pos` of run `run`.
    Bumped {
        snapshot: Option<u8>,
        rows: u8,
        run: u8,
        pos: u8,
        need: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WriteStep {
    NotStarted,
    /// Committed: the row and its outbox row (the triggers) in one
    /// transaction, under epoch `epoch` (`outbox::recorded`).
    Committed {
        epoch: u8,
    },
    /// The bump reached the master; `WAIT` for `need` replicas is next.
    Bumped {
        run: u8,
        pos: u8,
        need: u8,
    },
    /// The write answered `2xx`.
    Answered,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Write {
    pub on: u8,
    pub step: WriteStep,
    /// Its position in commit order (the row's value it wrote); 0 until committed.
    pub commit: u8,
    /// `NOTIFY`s of its owed bump not yet handled by instance `i` (`cache::listener`).
    pub notify_pending: [bool; INSTANCES],
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReadStep {
    NotStarted,
    /// `Store::lookup` answered `version` of `epoch` and no entry.
    Looked {
        epoch: u8,
        version: u8,
    },
    /// The loader ran (`reads.rs`).
    Loaded {
        epoch: u8,
        version: u8,
        data: u8,
    },
    Done(Served),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Read {
    pub on: u8,
    pub step: ReadStep,
    /// The newest write acknowledged when the read started whose `NOTIFY`
    /// (if it sent one) this instance had handled: what it must not be older than.
    pub floor: u8,
    /// The newest write acknowledged when the read started, `NOTIFY` or not.
    pub strict_floor: u8,
}

/// How much of each bounded fault has happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Used {
    pub failovers: u8,
    pub restores: u8,
    pub saves: u8,
    pub counter_losses: u8,
    pub outages: u8,
    pub purges: u8,
    pub replays: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// The row in PostgreSQL: how many writes have committed.
    pub db: u8,
    /// `cache_outbox` rows, a bit per write.
    pub outbox: u8,
    /// `cache_epoch.epoch`.
    pub epoch: u8,
    /// `cache_epoch.redis_runs`: the run the epoch was trusted on.
    pub trusted_run: u8,
    pub shard: Shard,
    /// Above every version ever handed out, on any master.
    pub ahead: u8,
    /// Every version each epoch's counter was set to, a bit per value.
    pub issued: [u64; EPOCHS],
    /// Whether each instance reaches Redis.
    pub reachable: [bool; INSTANCES],
    pub instances: [Instance; INSTANCES],
    pub writes: Vec<Write>,
    pub reads: Vec<Read>,
    pub used: Used,
    /// A read returned older data than its `floor`.
    pub stale: bool,
    /// A read returned older data than its `strict_floor`.
    pub stale_in_notify_window: bool,
    /// A counter was set to a version it had held before.
    pub repeated: bool,
    /// A new master's clock came back behind versions it lacks.
    pub clock_went_behind: bool,
    /// Owed bumps were replayed and counted on a new master.
    pub replayed_after_failover: bool,
    /// An owed bump of the cache-off instance's write was delivered by the other.
    pub cache_off_bump_delivered_by_other: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A write starts on instance `on`: its transaction commits the row, and
    /// the triggers record its outbox row under the current epoch
    /// (`routes::commit`, `outbox::recorded`); with `BumpBeforeCommit` it
    /// bumps first instead.
    StartWrite {
        write: u8,
        on: u8,
    },
    /// `cache::Cache::invalidate`: `CacheEpoch::adopt` of the write's epoch,
    /// then `Store::bump` (every epoch of `CacheEpoch::bumped`); owes when
    /// the breaker is open or Redis fails (`Cache::owe`: `OwedBumps::owe`,
    /// `outbox::notify_owed`, answer). Where the instance's topology lists no
    /// replica the bump counts at once.
    Bump {
        write: u8,
    },
    /// `WAIT` on the bump's connection. `delivered`: enough replicas have the
    /// bump (`ship`: a bit per replica brought up to it now), so
    /// `Cache::forget_outbox_rows` and answer; else timed out or failed:
    /// `Cache::owe` and answer.
    Wait {
        write: u8,
        delivered: bool,
        ship: u8,
    },
    /// `cache::Cache::read` on instance `on`: the read starts, checks the
    /// breaker and the owed set (BYPASS: loads and answers), else
    /// `Store::lookup` under the instance's epoch (version, re-creating a
    /// missing counter from `TIME`, and entry; a HIT answers).
    StartRead {
        read: u8,
        on: u8,
    },
    /// The loader of `reads.rs` reads PostgreSQL (rule 1: after the version).
    Load {
        read: u8,
    },
    /// `Store::store_entry` (`STORE`: only while the counter of the
    /// instance's epoch now still holds the version), then the MISS answers.
    Put {
        read: u8,
    },
    /// `cache::listener` handles a `NOTIFY` of write `write`'s owed bump.
    Notify {
        write: u8,
        to: u8,
    },
    /// `cache::listener` (`NOTIFY epoch`) or `Recovery::poll_epoch`:
    /// `CacheEpoch::adopt` of `cache_epoch.epoch`.
    AdoptEpoch {
        on: u8,
    },
    /// `CacheEpoch::bumped` stops including the previous epoch: 10 s after
    /// the move, by when every instance serving from Redis adopted it.
    MoveSettles {
        on: u8,
    },
    /// `cache::recovery`: with the breaker open, `Store::refresh_topology`
    /// and `Recovery::trust_epoch` (`linkhub_cache_trust_runs`: a new run
    /// moves the epoch) first; then snapshot the owed set, read the whole
    /// outbox (`outbox::pending`), bump (closes the breaker at once when
    /// the outbox is empty).
    ReplayBump {
        on: u8,
    },
    /// `cache::recovery`: `WAIT`; delivered: `outbox::delete`,
    /// `OwedBumps::settle`, `Breaker::close`.
    ReplayWait {
        on: u8,
        delivered: bool,
        ship: u8,
    },
    /// The master dies after shipping `shipped` more of its writes to replica
    /// `promote`, which takes over; the other replica resyncs from it.
    /// `behind`: the new master's clock is behind what it lacks.
    Failover {
        promote: u8,
        shipped: u8,
        behind: bool,
    },
    /// `SAVE` (or `BGSAVE`, an RDB rule, a managed backup): the snapshot is
    /// the master as it is now.
    Save,
    /// The master restarts from the snapshot (RDB/AOF, a restored backup):
    /// its keys as they were then, a new run id; its replicas resync.
    Restore {
        behind: bool,
    },
    /// An instance notices that the master changed: a connection error
    /// (`Cache::redis_failed`) or `cache::recovery`'s watch
    /// (`Store::refresh_topology`: node ids, slots, run ids): its breaker opens.
    NoticeChange {
        on: u8,
    },
    /// A counter is evicted, deleted or expires.
    LoseCounter {
        epoch: u8,
    },
    /// `cache::purge` / `cache::janitor`: `UNLINK` of entries older than their counter.
    Purge,
    /// Instance `on` loses Redis (it stays reachable for the others).
    Cut {
        on: u8,
    },
    Heal {
        on: u8,
    },
}

/// What a `WAIT` can answer: `(delivered, ship)`.
type WaitOutcome = (bool, u8);

impl Protocol {
    fn cache_off(&self, i: usize) -> bool {
        self.bounds.cache_off && i == 1
    }

    /// A counter of `epoch` takes its bump: `BUMP`'s `max(counter + 1,
    /// TIME)`, or the variants' `INCR` / re-creation from 0.
    fn bump_counter(&self, s: &mut State, epoch: u8) -> u8 {
        let value = match (s.shard.master.keys(epoch).counter, self.variant) {
            (Some(v), Variant::IncrOnExistingCounter) => v + 1,
            (Some(v), _) => (v + 1).max(s.shard.clock),
            (None, Variant::CounterRecreatedFromZero) => 1,
            (None, _) => s.shard.clock,
        };
        issue(s, epoch, value);
        s.shard.write(Op::Counter {
            epoch,
            value: Some(value),
        })
    }

    /// `Store::bump` on instance `on`: every epoch of `CacheEpoch::bumped`;
    /// answers the position to `WAIT` for.
    fn bump_epochs(&self, s: &mut State, on: usize) -> u8 {
        let instance = &s.instances[on];
        let (epoch, previous) = (instance.epoch, instance.recent_move);
        let mut pos = 0;
        if previous && epoch > 1 && self.variant != Variant::NoPreviousEpochBump {
            pos = self.bump_counter(s, epoch - 1);
        }
        pos.max(self.bump_counter(s, epoch))
    }

    /// How many replicas must acknowledge a bump sent by instance `on`.
    fn replicas_needed(&self, s: &State, on: usize) -> u8 {
        let listed = s.instances[on].seen_replicas;
        match self.variant {
            Variant::BumpCountedWithoutReplica => 0,
            Variant::WaitForOneReplica => listed.min(1),
            _ => listed,
        }
    }

    /// What a `WAIT` for `need` replicas on write `pos` of run `run`, sent by
    /// instance `on`, can answer: delivered when enough replicas have it or
    /// can still get it (same master, reachable), else timed out.
    fn wait_outcomes(&self, s: &State, on: u8, run: u8, pos: u8, need: u8) -> Vec<WaitOutcome> {
        let need = usize::from(need);
        if run != s.shard.run || !s.reachable[usize::from(on)] {
            return vec![(false, 0)];
        }
        let replicas = &s.shard.replicas;
        if s.shard.acks(run, pos) >= need {
            return vec![(true, 0)];
        }
        let mut outcomes = vec![(false, 0)];
        let lacking: Vec<usize> = (0..replicas.len())
            .filter(|&r| replicas[r].applied < pos)
            .collect();
        let have = replicas.len() - lacking.len();
        if have + lacking.len() < need {
            // More replicas needed than there are: it can only time out.
            return outcomes;
        }
        // Ship to just enough of the lacking replicas (any choice of them;
        // identical replicas are one choice).
        let missing = need - have;
        let mut chosen: Vec<u8> = Vec::new();
        for mask in 1u8..(1 << lacking.len()) {
            if mask.count_ones() as usize != missing {
                continue;
            }
            let ship = lacking
                .iter()
                .enumerate()
                .filter(|(b, _)| mask & (1 << b) != 0)
                .fold(0u8, |m, (_, &r)| m | (1 << r));
            let same_as_chosen = chosen.iter().any(|&c| {
                let pick = |m: u8| (0..replicas.len()).filter(move |r| m & (1 << r) != 0);
                pick(c)
                    .zip(pick(ship))
                    .all(|(a, b)| replicas[a] == replicas[b])
            });
            if !same_as_chosen {
                chosen.push(ship);
                outcomes.push((true, ship));
            }
        }
        outcomes
    }

    /// Whether instance `on`'s next command fails because its connection was
    /// to a Redis process that restarted (the correct protocol: it notices
    /// the restart before the restarted process serves it).
    fn fails_on_restart(&self, s: &State, on: usize) -> bool {
        self.variant != Variant::RestartServedBeforeNoticed
            && s.instances[on].seen_run != s.shard.run
            && s.shard.restarted
    }

    /// A command of instance `on` failed: its breaker opens
    /// (`Cache::redis_failed`, `Breaker::trip`).
    fn trip(&self, s: &mut State, on: usize) {
        s.instances[on].closed = false;
    }

    fn start_write(&self, s: &mut State, w: usize, on: u8) {
        s.writes[w].on = on;
        if self.variant == Variant::BumpBeforeCommit {
            self.bump(s, w);
        } else {
            let epoch = s.epoch;
            commit(s, w, true);
            s.writes[w].step = WriteStep::Committed { epoch };
        }
    }

    fn bump(&self, s: &mut State, w: usize) {
        let on = usize::from(s.writes[w].on);
        if let WriteStep::Committed { epoch } = s.writes[w].step {
            adopt(&mut s.instances[on], epoch);
        }
        if self.variant == Variant::CacheOffDropsRows && self.cache_off(on) {
            s.outbox &= !(1 << w);
            s.writes[w].step = WriteStep::Answered;
            return;
        }
        if !s.instances[on].closed {
            return self.owe_and_answer(s, w);
        }
        if !s.reachable[on] || self.fails_on_restart(s, on) {
            self.trip(s, on);
            return self.owe_and_answer(s, w);
        }
        let pos = self.bump_epochs(s, on);
        let need = self.replicas_needed(s, on);
        if need == 0 {
            return self.delivered(s, w);
        }
        s.writes[w].step = WriteStep::Bumped {
            run: s.shard.run,
            pos,
            need,
        };
    }

    fn wait(&self, s: &mut State, w: usize, delivered: bool, ship: u8) {
        let WriteStep::Bumped { pos, run, .. } = s.writes[w].step else {
            return;
        };
        let on = usize::from(s.writes[w].on);
        if delivered {
            ship_to(s, ship, pos);
            return self.delivered(s, w);
        }
        // A timeout (the replicas lag) is no Redis error; a lost connection is.
        if !s.reachable[on] || run != s.shard.run {
            self.trip(s, on);
        }
        self.owe_and_answer(s, w);
    }

    fn delivered(&self, s: &mut State, w: usize) {
        if self.variant == Variant::BumpBeforeCommit {
            commit(s, w, false);
        } else {
            s.outbox &= !(1 << w);
        }
        s.writes[w].step = WriteStep::Answered;
    }

    fn owe_and_answer(&self, s: &mut State, w: usize) {
        if self.variant == Variant::BumpBeforeCommit {
            commit(s, w, true);
        }
        let on = usize::from(s.writes[w].on);
        owe(&mut s.instances[on]);
        for (i, pending) in s.writes[w].notify_pending.iter_mut().enumerate() {
            *pending = i != on;
        }
        s.writes[w].step = WriteStep::Answered;
    }

    fn start_read(&self, s: &mut State, r: usize, on: u8) {
        let i = usize::from(on);
        let answered = |with_notify_handled: bool| {
            s.writes
                .iter()
                .filter(|w| w.step == WriteStep::Answered)
                .filter(|w| !with_notify_handled || !w.notify_pending[i])
                .map(|w| w.commit)
                .max()
                .unwrap_or(0)
        };
        let (floor, strict_floor) = (answered(true), answered(false));
        s.reads[r] = Read {
            on,
            step: ReadStep::NotStarted,
            floor,
            strict_floor,
        };
        let instance = &s.instances[i];
        if !instance.closed || instance.owed.is_some() {
            return finish(s, r, s.db, Served::Bypass);
        }
        if !s.reachable[i] || self.fails_on_restart(s, i) {
            self.trip(s, i);
            return finish(s, r, s.db, Served::Bypass);
        }
        let epoch = s.instances[i].epoch;
        let version = match s.shard.master.keys(epoch).counter {
            Some(v) => v,
            None => {
                let v = match self.variant {
                    Variant::CounterRecreatedFromZero => 0,
                    _ => s.shard.clock,
                };
                issue(s, epoch, v);
                s.shard.write(Op::Counter {
                    epoch,
                    value: Some(v),
                });
                v
            }
        };
        match s.shard.master.entry(epoch, version) {
            Some(data) => finish(s, r, data, Served::Hit),
            None => s.reads[r].step = ReadStep::Looked { epoch, version },
        }
    }

    fn put(&self, s: &mut State, r: usize) {
        let ReadStep::Loaded {
            epoch: looked_in,
            version,
            data,
        } = s.reads[r].step
        else {
            return;
        };
        let on = usize::from(s.reads[r].on);
        if !s.reachable[on] || self.fails_on_restart(s, on) {
            self.trip(s, on);
        } else {
            // The epoch of the lookup, or (today's code) of now.
            let epoch = match self.variant {
                Variant::StoreUnderTheEpochOfNow => s.instances[on].epoch,
                _ => looked_in,
            };
            if s.shard.master.keys(epoch).counter == Some(version) {
                s.shard.write(Op::Put {
                    epoch,
                    version,
                    data,
                });
            }
        }
        finish(s, r, data, Served::Miss);
    }

    fn replay_bump(&self, s: &mut State, on: usize) {
        if !s.instances[on].closed {
            // `Store::refresh_topology`, then `Recovery::trust_epoch`.
            s.instances[on].seen_run = s.shard.run;
            s.instances[on].seen_replicas = s.shard.replicas.len() as u8;
            if s.trusted_run != s.shard.run {
                if self.variant != Variant::NoRestartGuard {
                    s.epoch += 1;
                }
                s.trusted_run = s.shard.run;
            }
            let epoch = s.epoch;
            adopt(&mut s.instances[on], epoch);
        }
        let snapshot = s.instances[on].owed;
        let rows = s.outbox;
        if rows == 0 {
            return settle_and_close(s, on, snapshot);
        }
        if self.fails_on_restart(s, on) {
            return self.trip(s, on);
        }
        s.used.replays += 1;
        let pos = self.bump_epochs(s, on);
        let need = self.replicas_needed(s, on);
        if need == 0 {
            return self.replay_delivered(s, on, snapshot, rows);
        }
        s.instances[on].recovery = Recovery::Bumped {
            snapshot,
            rows,
            run: s.shard.run,
            pos,
            need,
        };
    }

    fn replay_wait(&self, s: &mut State, on: usize, delivered: bool, ship: u8) {
        let Recovery::Bumped {
            snapshot,
            rows,
            pos,
            ..
        } = s.instances[on].recovery
        else {
            return;
        };
        s.instances[on].recovery = Recovery::Idle;
        // A failed replay changes nothing: the rows stay, the owed set too.
        if delivered {
            ship_to(s, ship, pos);
            self.replay_delivered(s, on, snapshot, rows);
        }
    }

    fn replay_delivered(&self, s: &mut State, on: usize, snapshot: Option<u8>, rows: u8) {
        if self.bounds.cache_off && on == 0 {
            let off_rows = s
                .writes
                .iter()
                .enumerate()
                .any(|(w, write)| write.on == 1 && rows & (1 << w) != 0);
            s.cache_off_bump_delivered_by_other |= off_rows;
        }
        s.outbox &= !rows;
        if s.shard.run > 0 {
            s.replayed_after_failover = true;
        }
        settle_and_close(s, on, snapshot);
    }

    /// The new master's clock: ahead of every version handed out, or (when
    /// `behind`) only past the versions it holds.
    fn new_clock(&self, s: &mut State, behind: bool) {
        s.clock_went_behind |= behind && s.shard.master.highest() + 1 < s.ahead;
        s.shard.clock = if behind {
            s.shard.master.highest() + 1
        } else {
            s.ahead
        };
    }
}

/// Brings the replicas in `ship` (a bit each) up to the master's write `pos`.
fn ship_to(s: &mut State, ship: u8, pos: u8) {
    for r in 0..s.shard.replicas.len() {
        if ship & (1 << r) != 0 {
            s.shard.ship(r, pos);
        }
    }
}

/// `CacheEpoch::adopt`: moves forward only; a move (not the first epoch
/// learned) keeps bumping the previous epoch for a while.
fn adopt(instance: &mut Instance, epoch: u8) {
    if epoch > instance.epoch {
        instance.epoch = epoch;
        instance.recent_move = true;
    }
}

/// The write's transaction commits; `with_row` records its outbox row.
fn commit(s: &mut State, w: usize, with_row: bool) {
    s.db += 1;
    s.writes[w].commit = s.db;
    if with_row {
        s.outbox |= 1 << w;
    }
}

/// `OwedBumps::owe`.
fn owe(instance: &mut Instance) {
    instance.owe_sequence += 1;
    instance.owed = Some(instance.owe_sequence);
}

/// `OwedBumps::settle` then `Breaker::close`.
fn settle_and_close(s: &mut State, on: usize, snapshot: Option<u8>) {
    let instance = &mut s.instances[on];
    if instance.owed == snapshot {
        instance.owed = None;
    }
    instance.closed = true;
}

/// A counter of `epoch` takes `value`; records whether it had held it before.
fn issue(s: &mut State, epoch: u8, value: u8) {
    assert!(
        value < 64,
        "the bounds let versions outgrow the model's bit set"
    );
    let issued = &mut s.issued[usize::from(epoch - 1)];
    if *issued & (1 << value) != 0 {
        s.repeated = true;
    }
    *issued |= 1 << value;
    s.shard.clock = s.shard.clock.max(value + 1);
    s.ahead = s.ahead.max(value + 1);
}

fn finish(s: &mut State, r: usize, data: u8, served: Served) {
    let read = &mut s.reads[r];
    s.stale |= data < read.floor;
    s.stale_in_notify_window |= data < read.strict_floor;
    read.step = ReadStep::Done(served);
}

/// Merges states that differ only in what no later step reads: owe
/// sequence numbers are renumbered (only their equality matters), finished
/// reads and answered writes forget their instance, and a snapshot nothing
/// can restart from any more is forgotten.
fn normalize(s: &mut State, bounds: &Bounds) {
    for instance in &mut s.instances {
        let snapshot = match &instance.recovery {
            Recovery::Bumped { snapshot, .. } => *snapshot,
            Recovery::Idle => None,
        };
        let mut seen: Vec<u8> = [instance.owed, snapshot].into_iter().flatten().collect();
        seen.sort_unstable();
        seen.dedup();
        let renumber =
            |v: Option<u8>| v.map(|v| seen.iter().position(|&x| x == v).map_or(0, |p| p as u8 + 1));
        instance.owed = renumber(instance.owed);
        if let Recovery::Bumped { snapshot, .. } = &mut instance.recovery {
            *snapshot = renumber(*snapshot);
        }
        instance.owe_sequence = seen.len() as u8;
    }
    for read in &mut s.reads {
        if let ReadStep::Done(_) = read.step {
            read.on = 0;
            read.floor = 0;
            read.strict_floor = 0;
        }
    }
    for write in &mut s.writes {
        if write.step == WriteStep::Answered && !write.notify_pending.iter().any(|&p| p) {
            write.on = 0;
        }
    }
    if s.used.restores >= bounds.restores {
        s.shard.snapshot = Node::default();
    }
}

/// Processes are identical until they start, so they start in index order.
fn next_to_start<T>(items: &[T], not_started: impl Fn(&T) -> bool) -> Option<usize> {
    items.iter().position(not_started)
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let replicas = usize::from(self.bounds.replicas.min(MAX_REPLICAS as u8));
        let instance = Instance {
            // In the code the breaker starts open and recovery closes it over
            // an empty outbox, having trusted the Redis run under epoch 1;
            // the model starts after that.
            closed: true,
            owed: None,
            owe_sequence: 0,
            epoch: 1,
            recent_move: false,
            seen_run: 0,
            seen_replicas: replicas as u8,
            recovery: Recovery::Idle,
        };
        vec![State {
            db: 0,
            outbox: 0,
            epoch: 1,
            trusted_run: 0,
            shard: Shard {
                master: Node::default(),
                replicas: vec![
                    Replica {
                        node: Node::default(),
                        applied: 0,
                    };
                    replicas
                ],
                log: Vec::new(),
                base: 0,
                run: 0,
                clock: 1,
                snapshot: Node::default(),
                restarted: false,
            },
            ahead: 1,
            issued: [0; EPOCHS],
            reachable: [true; INSTANCES],
            instances: std::array::from_fn(|_| instance.clone()),
            writes: vec![
                Write {
                    on: 0,
                    step: WriteStep::NotStarted,
                    commit: 0,
                    notify_pending: [false; INSTANCES],
                };
                usize::from(self.bounds.writes)
            ],
            reads: vec![
                Read {
                    on: 0,
                    step: ReadStep::NotStarted,
                    floor: 0,
                    strict_floor: 0,
                };
                usize::from(self.bounds.reads)
            ],
            used: Used::default(),
            stale: false,
            stale_in_notify_window: false,
            repeated: false,
            clock_went_behind: false,
            replayed_after_failover: false,
            cache_off_bump_delivered_by_other: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        // While the instances are interchangeable, the first thing that
        // singles one out happens on instance 0 (swapping them is a symmetry).
        let interchangeable = !self.bounds.cache_off
            && s.instances[0] == s.instances[1]
            && s.reachable[0] == s.reachable[1]
            && s.writes.iter().all(|w| w.step == WriteStep::NotStarted)
            && s.reads.iter().all(|r| r.step == ReadStep::NotStarted);
        let instances = 0..if interchangeable { 1 } else { INSTANCES as u8 };
        if let Some(w) = next_to_start(&s.writes, |w| w.step == WriteStep::NotStarted) {
            for on in instances.clone() {
                actions.push(Action::StartWrite { write: w as u8, on });
            }
        }
        for (w, write) in s.writes.iter().enumerate() {
            let write_id = w as u8;
            match write.step {
                WriteStep::Committed { .. } => actions.push(Action::Bump { write: write_id }),
                WriteStep::Bumped { run, pos, need } => {
                    for (delivered, ship) in self.wait_outcomes(s, write.on, run, pos, need) {
                        actions.push(Action::Wait {
                            write: write_id,
                            delivered,
                            ship,
                        });
                    }
                }
                _ => {}
            }
            for (to, &pending) in write.notify_pending.iter().enumerate() {
                if pending {
                    actions.push(Action::Notify {
                        write: write_id,
                        to: to as u8,
                    });
                }
            }
        }
        // A read on the cache-off instance is a BYPASS of the row as it is:
        // fresh by construction, so only cache-on instances read.
        if let Some(r) = next_to_start(&s.reads, |r| r.step == ReadStep::NotStarted) {
            for on in instances.clone() {
                if !self.cache_off(usize::from(on)) {
                    actions.push(Action::StartRead { read: r as u8, on });
                }
            }
        }
        for (r, read) in s.reads.iter().enumerate() {
            match read.step {
                ReadStep::Looked { .. } => actions.push(Action::Load { read: r as u8 }),
                ReadStep::Loaded { .. } => actions.push(Action::Put { read: r as u8 }),
                _ => {}
            }
        }
        for (i, instance) in s.instances.iter().enumerate().take(instances.len()) {
            let on = i as u8;
            match instance.recovery {
                Recovery::Idle => {
                    let wanted = !instance.closed || instance.owed.is_some();
                    let may_bump = s.outbox == 0 || s.used.replays < self.bounds.replays;
                    if wanted && s.reachable[i] && may_bump {
                        actions.push(Action::ReplayBump { on });
                    }
                }
                Recovery::Bumped { run, pos, need, .. } => {
                    for (delivered, ship) in self.wait_outcomes(s, on, run, pos, need) {
                        actions.push(Action::ReplayWait {
                            on,
                            delivered,
                            ship,
                        });
                    }
                }
            }
            if instance.epoch < s.epoch {
                actions.push(Action::AdoptEpoch { on });
            }
            if instance.recent_move {
                // 10 s: every instance that serves from Redis has adopted the move.
                let adopted = s.instances.iter().enumerate().all(|(j, other)| {
                    self.cache_off(j) || !other.closed || other.epoch >= instance.epoch
                });
                if adopted {
                    actions.push(Action::MoveSettles { on });
                }
            }
            if instance.seen_run != s.shard.run {
                actions.push(Action::NoticeChange { on });
            }
            if s.reachable[i] {
                if s.used.outages < self.bounds.outages {
                    actions.push(Action::Cut { on });
                }
            } else {
                actions.push(Action::Heal { on });
            }
        }
        let behind: &[bool] = match self.bounds.clocks {
            Clocks::Ahead => &[false],
            Clocks::MayBeBehind => &[false, true],
        };
        if s.used.failovers < self.bounds.failovers {
            let replicas = &s.shard.replicas;
            for (r, replica) in replicas.iter().enumerate() {
                if replicas[..r].contains(replica) {
                    continue;
                }
                let lacking = s.shard.base + s.shard.log.len() as u8 - replica.applied;
                for shipped in 0..=lacking {
                    for &behind in behind {
                        actions.push(Action::Failover {
                            promote: r as u8,
                            shipped,
                            behind,
                        });
                    }
                }
            }
        }
        if s.used.restores < self.bounds.restores {
            if s.used.saves < self.bounds.restores && s.shard.snapshot != s.shard.master {
                actions.push(Action::Save);
            }
            for &behind in behind {
                actions.push(Action::Restore { behind });
            }
        }
        if s.used.counter_losses < self.bounds.counter_losses {
            for epoch in 1..=EPOCHS as u8 {
                if s.shard.master.keys(epoch).counter.is_some() {
                    actions.push(Action::LoseCounter { epoch });
                }
            }
        }
        if s.used.purges < self.bounds.purges
            && s.shard.master.epochs.iter().any(|keys| {
                keys.counter
                    .is_some_and(|current| keys.entries.iter().any(|e| e.0 < current))
            })
        {
            actions.push(Action::Purge);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::StartWrite { write, on } => self.start_write(&mut s, usize::from(write), on),
            Action::Bump { write } => self.bump(&mut s, usize::from(write)),
            Action::Wait {
                write,
                delivered,
                ship,
            } => self.wait(&mut s, usize::from(write), delivered, ship),
            Action::StartRead { read, on } => self.start_read(&mut s, usize::from(read), on),
            Action::Load { read } => {
                let r = usize::from(read);
                if let ReadStep::Looked { epoch, version } = s.reads[r].step {
                    s.reads[r].step = ReadStep::Loaded {
                        epoch,
                        version,
                        data: s.db,
                    };
                }
            }
            Action::Put { read } => self.put(&mut s, usize::from(read)),
            Action::Notify { write, to } => {
                s.writes[usize::from(write)].notify_pending[usize::from(to)] = false;
                owe(&mut s.instances[usize::from(to)]);
            }
            Action::AdoptEpoch { on } => {
                let epoch = s.epoch;
                adopt(&mut s.instances[usize::from(on)], epoch);
            }
            Action::MoveSettles { on } => s.instances[usize::from(on)].recent_move = false,
            Action::ReplayBump { on } => self.replay_bump(&mut s, usize::from(on)),
            Action::ReplayWait {
                on,
                delivered,
                ship,
            } => self.replay_wait(&mut s, usize::from(on), delivered, ship),
            Action::Failover {
                promote,
                shipped,
                behind,
            } => {
                s.used.failovers += 1;
                let r = usize::from(promote);
                let pos = s.shard.replicas[r].applied + shipped;
                s.shard.ship(r, pos);
                let promoted = s.shard.replicas[r].node.clone();
                let replicas = s.shard.replicas.len() - 1;
                s.shard.new_master(promoted, replicas);
                s.shard.restarted = false;
                self.new_clock(&mut s, behind);
            }
            Action::Save => {
                s.used.saves += 1;
                s.shard.snapshot = s.shard.master.clone();
            }
            Action::Restore { behind } => {
                s.used.restores += 1;
                let restored = s.shard.snapshot.clone();
                let replicas = s.shard.replicas.len();
                s.shard.new_master(restored, replicas);
                s.shard.restarted = true;
                self.new_clock(&mut s, behind);
            }
            Action::NoticeChange { on } => {
                let instance = &mut s.instances[usize::from(on)];
                instance.seen_run = s.shard.run;
                instance.seen_replicas = s.shard.replicas.len() as u8;
                instance.closed = false;
            }
            Action::LoseCounter { epoch } => {
                s.used.counter_losses += 1;
                s.shard.write(Op::Counter { epoch, value: None });
            }
            Action::Purge => {
                s.used.purges += 1;
                for epoch in 1..=EPOCHS as u8 {
                    let keys = s.shard.master.keys(epoch);
                    let Some(current) = keys.counter else {
                        continue;
                    };
                    let stale: Vec<u8> = keys
                        .entries
                        .iter()
                        .map(|e| e.0)
                        .filter(|&v| v < current)
                        .collect();
                    for version in stale {
                        s.shard.write(Op::Unlink { epoch, version });
                    }
                }
            }
            Action::Cut { on } => {
                s.used.outages += 1;
                s.reachable[usize::from(on)] = false;
            }
            Action::Heal { on } => s.reachable[usize::from(on)] = true,
        }
        normalize(&mut s, &self.bounds);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::<Self>::always(FRESH_READS, |_, s| !s.stale),
            Property::<Self>::always(VERSIONS_NEVER_REPEAT, |_, s| {
                !s.repeated || s.clock_went_behind
            }),
            Property::<Self>::sometimes(A_REPEAT_AFTER_A_CLOCK_WENT_BEHIND, |_, s| {
                s.repeated && s.clock_went_behind
            }),
            Property::<Self>::always(FRESH_READS_IN_NOTIFY_WINDOW, |_, s| {
                !s.stale_in_notify_window
            }),
            Property::<Self>::sometimes(A_HIT, |_, s| hit(s)),
            Property::<Self>::sometimes(A_FAILOVER, |_, s| s.used.failovers > 0),
            Property::<Self>::sometimes(A_RESTORE, |_, s| s.used.restores > 0),
            Property::<Self>::sometimes(AN_EPOCH_MOVE, |_, s| s.epoch > 1),
            Property::<Self>::sometimes(A_HIT_AFTER_AN_EPOCH_MOVE, |_, s| s.epoch > 1 && hit(s)),
            Property::<Self>::sometimes(A_REPLAY_AFTER_FAILOVER, |_, s| s.replayed_after_failover),
            Property::<Self>::sometimes(A_HIT_AFTER_A_FAILOVER_REPLAY, |_, s| {
                s.replayed_after_failover && hit(s)
            }),
            Property::<Self>::sometimes(A_CACHE_OFF_BUMP_DELIVERED_BY_THE_OTHER, |_, s| {
                s.cache_off_bump_delivered_by_other
            }),
        ]
    }
}

/// Some read was a HIT.
fn hit(s: &State) -> bool {
    s.reads
        .iter()
        .any(|r| r.step == ReadStep::Done(Served::Hit))
}

/// No read that starts after a write is acknowledged returns older data
/// (except inside the documented `NOTIFY` window: see the next one).
pub const FRESH_READS: &str = "no read starting after an acknowledged write returns older data";
/// A counter of an epoch never takes a value it held before, on any master,
/// as long as every new master's clock is ahead of what it lacks (the
/// assumption of `max(counter + 1, TIME)`).
pub const VERSIONS_NEVER_REPEAT: &str = "versions never repeat (while clocks are ahead)";
/// The assumption is needed: with a clock behind, versions do repeat (in
/// the epoch the change left behind). Freshness must hold all the same.
pub const A_REPEAT_AFTER_A_CLOCK_WENT_BEHIND: &str =
    "a version repeats after a new master's clock came back behind";
/// The same as [`FRESH_READS`] without the exception docs/RUNNING.md documents
/// (`cache::listener`): a read on another instance that starts after an
/// owed write answered but before its `NOTIFY` was handled. Expected to fail.
pub const FRESH_READS_IN_NOTIFY_WINDOW: &str =
    "fresh reads even before the other instance handled the NOTIFY (known window)";
pub const A_HIT: &str = "a read is a HIT";
pub const A_FAILOVER: &str = "a failover happens";
pub const A_RESTORE: &str = "the master restarts from a snapshot";
pub const AN_EPOCH_MOVE: &str = "the cache epoch moves";
pub const A_HIT_AFTER_AN_EPOCH_MOVE: &str = "a HIT after the cache epoch moved";
pub const A_REPLAY_AFTER_FAILOVER: &str = "owed bumps are replayed on a new master";
pub const A_HIT_AFTER_A_FAILOVER_REPLAY: &str = "a HIT follows a replay on a new master";
pub const A_CACHE_OFF_BUMP_DELIVERED_BY_THE_OTHER: &str =
    "a cache-off instance's owed bump is delivered by the other instance";
