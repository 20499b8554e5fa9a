//! A model of the cache-invalidation protocol (the seven rules of
//! `src/cache/mod.rs`, with replicated shards and failovers), small
//! enough for `stateright` to explore every interleaving within its bounds.
//!
//! One namespace with one cached query; two instances; one Redis shard (a
//! master and a replica that has a prefix of the master's writes);
//! PostgreSQL holding the row and the outbox. The row's value is the number
//! of committed writes, so "older data" is a smaller number.
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

/// Which protocol the model runs: the correct one, or one with a known bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Rules 1–4 on a replicated shard: a bump counts once the replica has it
    /// (`WAIT`), owed bumps are replayed, and every bump sets the counter
    /// from the Redis clock (`max(counter + 1, TIME)`), so a version is never
    /// handed out twice, not even after a failover rolled the counter back.
    Correct,
    /// Breaks rule 2: the counter is bumped before the write commits.
    BumpBeforeCommit,
    /// Breaks the replica rule: a bump counts as delivered as soon as the
    /// master took it, without waiting for a replica (`WAIT`).
    BumpCountedWithoutReplica,
    /// Breaks rule 3: a missing counter comes back as 0 (and `INCR` makes it 1).
    CounterRecreatedFromZero,
    /// The `BUMP` script as it was before bumps took the Redis clock: `INCR` on
    /// an existing counter. With `WAIT` and replays it is still unsafe after a
    /// failover: the replay re-issues versions the old master already handed out.
    IncrOnExistingCounter,
}

/// How much of each thing may happen in one run: what makes the search finite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bounds {
    pub writes: u8,
    pub reads: u8,
    pub failovers: u8,
    pub counter_losses: u8,
    /// Times an instance is cut off from Redis.
    pub outages: u8,
    pub purges: u8,
    /// Outbox replays that bump (each hands out a version).
    pub replays: u8,
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

/// One Redis node's keys of the namespace: the counter and the entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Node {
    /// `lh:ver:{ns}`; `None` when evicted or deleted.
    pub counter: Option<u8>,
    /// `lh:{ns}:<version>:<query>` → the row's value it was loaded with; sorted by version.
    pub entries: Vec<(u8, u8)>,
}

/// A write on the master, shipped to the replica in order (Redis replication).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Counter(Option<u8>),
    Put { version: u8, data: u8 },
    Unlink { version: u8 },
}

impl Node {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Counter(value) => self.counter = value,
            Op::Put { version, data } => match self.entries.binary_search_by_key(&version, |e| e.0)
            {
                Ok(i) => self.entries[i].1 = data,
                Err(i) => self.entries.insert(i, (version, data)),
            },
            Op::Unlink { version } => self.entries.retain(|e| e.0 != version),
        }
    }

    fn entry(&self, version: u8) -> Option<u8> {
        self.entries
            .iter()
            .find(|e| e.0 == version)
            .map(|&(_, data)| data)
    }
}

/// The shard: a master, its replica, and what the replica does not have yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    pub master: Node,
    pub replica: Node,
    /// The master's writes the replica lacks, oldest first (a lagging or
    /// broken replication link is a backlog that is not drained).
    pub backlog: Vec<Op>,
    /// Writes of this master the replica has applied (what `WAIT` counts).
    pub replicated: u8,
    /// Failovers so far: which master a connection talked to.
    pub epoch: u8,
}

impl Shard {
    /// Applies `op` on the master; answers its position for `WAIT`.
    fn write(&mut self, op: Op) -> u8 {
        self.master.apply(op);
        self.backlog.push(op);
        self.replicated + self.backlog.len() as u8
    }

    /// `WAIT 1 <timeout>` on the connection that sent write `pos` of `epoch`
    /// succeeds: the replica has it.
    fn replica_has(&self, epoch: u8, pos: u8) -> bool {
        epoch == self.epoch && self.replicated >= pos
    }

    /// Replication ships the master's writes up to `pos`, oldest first.
    fn replicate_up_to(&mut self, pos: u8) {
        while self.replicated < pos && !self.backlog.is_empty() {
            let op = self.backlog.remove(0);
            self.replica.apply(op);
            self.replicated += 1;
        }
    }
}

/// What one instance's `cache::breaker::Breaker`, `cache::owed::OwedBumps` and recovery task hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instance {
    /// `Breaker::lets_through`: reads may use Redis.
    pub closed: bool,
    /// `OwedBumps::is_owed` for the namespace: the sequence number of the last
    /// `OwedBumps::owe`, so that `OwedBumps::settle` clears only what a replay covered.
    pub owed: Option<u8>,
    pub owe_sequence: u8,
    /// The failover this instance last noticed.
    pub seen_epoch: u8,
    pub recovery: Recovery,
}

/// Where `cache::recovery::Recovery::settle_owed` is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Recovery {
    Idle,
    /// Replayed the outbox rows `rows` (a bit per write) on the master, now `WAIT`s.
    Bumped {
        snapshot: Option<u8>,
        rows: u8,
        epoch: u8,
        pos: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WriteStep {
    NotStarted,
    /// Committed: the row and its outbox row (`db::outbox::record`) in one transaction.
    Committed,
    /// The counter bump reached the master; `WAIT` is next.
    Bumped {
        epoch: u8,
        pos: u8,
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
    /// `Store::lookup` answered `version` and no entry.
    Looked {
        version: u8,
    },
    /// The loader ran (`reads.rs`).
    Loaded {
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
    pub shard: Shard,
    /// The Redis clock, as the next value above every version ever handed out
    /// (microseconds run far ahead of bumps; the new master's clock is
    /// assumed within the failover time of the old one's).
    pub clock: u8,
    /// Every version any master's counter was set to, a bit per value.
    pub issued: u64,
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
    /// Owed bumps were replayed and counted on a promoted master.
    pub replayed_after_failover: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A write starts on instance `on`: its transaction commits the row and
    /// its outbox row (`db::outbox::record`, `routes::commit`); with
    /// `BumpBeforeCommit` it bumps first instead.
    StartWrite {
        write: u8,
        on: u8,
    },
    /// `cache::Cache::invalidate` → `Store::bump`; owes when the breaker is
    /// open or Redis fails (`Cache::owe`: `OwedBumps::owe`, `outbox::notify_owed`, answer).
    Bump {
        write: u8,
    },
    /// `WAIT` for the replica; `replicated`: the replica has the bump (it
    /// may ship it now), so it is delivered: `Cache::forget_outbox_rows` and
    /// answer; else timed out or failed: `Cache::owe` and answer.
    Wait {
        write: u8,
        replicated: bool,
    },
    /// `cache::Cache::read` on instance `on`: the read starts, checks the
    /// breaker and the owed set (BYPASS: loads and answers), else
    /// `Store::lookup` (version, re-creating a missing counter, and entry; a HIT answers).
    StartRead {
        read: u8,
        on: u8,
    },
    /// The loader of `reads.rs` reads PostgreSQL (rule 1: after the version).
    Load {
        read: u8,
    },
    /// `Store::store_entry` under the version of the lookup, then the MISS answers.
    Put {
        read: u8,
    },
    /// `cache::listener` handles a `NOTIFY` of write `write`'s owed bump.
    Notify {
        write: u8,
        to: u8,
    },
    /// `cache::recovery`: snapshot the owed set, read the whole outbox
    /// (`outbox::pending`), bump on the master (closes the breaker at once
    /// when the outbox is empty).
    ReplayBump {
        on: u8,
    },
    /// `cache::recovery`: `WAIT`; delivered: `outbox::delete`,
    /// `OwedBumps::settle`, `Breaker::close`.
    ReplayWait {
        on: u8,
        replicated: bool,
    },
    /// The master dies after shipping `shipped` more of its writes; the
    /// replica is promoted without the rest. (Replication is observable only
    /// here and at a `WAIT`, so it happens at those two steps.)
    Failover {
        shipped: u8,
    },
    /// An instance notices the failover (connection error, `MOVED`, run id):
    /// its breaker opens, so recovery replays the outbox before trusting Redis.
    NoticeFailover {
        on: u8,
    },
    /// The counter is evicted or deleted.
    LoseCounter,
    /// `cache::purge`: `SCAN` + `UNLINK` of entries older than the counter.
    Purge,
    /// Instance `on` loses Redis (it stays reachable for the others).
    Cut {
        on: u8,
    },
    Heal {
        on: u8,
    },
}

impl Protocol {
    /// A write's bump: `BUMP`'s old `INCR`, in the correct protocol (and the code)
    /// `max(counter + 1, TIME)`; a missing counter is re-created (rule 3).
    fn bump_counter(&self, s: &mut State) -> u8 {
        let value = match (s.shard.master.counter, self.variant) {
            (Some(v), Variant::IncrOnExistingCounter) => v + 1,
            (Some(v), _) => (v + 1).max(s.clock),
            (None, Variant::CounterRecreatedFromZero) => 1,
            (None, _) => s.clock,
        };
        issue(s, value);
        s.shard.write(Op::Counter(Some(value)))
    }

    /// What `Store::lookup`'s script does when the counter is missing.
    fn recreated_counter(&self, s: &State) -> u8 {
        match self.variant {
            Variant::CounterRecreatedFromZero => 0,
            _ => s.clock,
        }
    }

    /// What a `WAIT` can answer: delivered when the replica has the bump or
    /// can still get it (same master, reachable), timed out unless it has it.
    fn wait_outcomes(&self, s: &State, on: u8, epoch: u8, pos: u8) -> Vec<bool> {
        if s.shard.replica_has(epoch, pos) && s.reachable[usize::from(on)] {
            vec![true]
        } else if epoch == s.shard.epoch && s.reachable[usize::from(on)] {
            vec![true, false]
        } else {
            vec![false]
        }
    }

    fn start_write(&self, s: &mut State, w: usize, on: u8) {
        s.writes[w].on = on;
        if self.variant == Variant::BumpBeforeCommit {
            self.bump(s, w);
        } else {
            commit(s, w, true);
            s.writes[w].step = WriteStep::Committed;
        }
    }

    fn bump(&self, s: &mut State, w: usize) {
        let on = usize::from(s.writes[w].on);
        if !s.instances[on].closed {
            return self.owe_and_answer(s, w);
        }
        if !s.reachable[on] {
            s.instances[on].closed = false;
            return self.owe_and_answer(s, w);
        }
        let pos = self.bump_counter(s);
        if self.variant == Variant::BumpCountedWithoutReplica {
            return self.delivered(s, w);
        }
        s.writes[w].step = WriteStep::Bumped {
            epoch: s.shard.epoch,
            pos,
        };
    }

    fn wait(&self, s: &mut State, w: usize, replicated: bool) {
        let WriteStep::Bumped { epoch, pos } = s.writes[w].step else {
            return;
        };
        let on = usize::from(s.writes[w].on);
        if replicated {
            s.shard.replicate_up_to(pos);
            return self.delivered(s, w);
        }
        // A timeout (the replica lags) is no Redis error; a lost connection is.
        if !s.reachable[on] || epoch != s.shard.epoch {
            s.instances[on].closed = false;
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
        let instance = &mut s.instances[i];
        if !instance.closed || instance.owed.is_some() {
            return finish(s, r, s.db, Served::Bypass);
        }
        if !s.reachable[i] {
            instance.closed = false;
            return finish(s, r, s.db, Served::Bypass);
        }
        let version = match s.shard.master.counter {
            Some(v) => v,
            None => {
                let v = self.recreated_counter(s);
                issue(s, v);
                s.shard.write(Op::Counter(Some(v)));
                v
            }
        };
        match s.shard.master.entry(version) {
            Some(data) => finish(s, r, data, Served::Hit),
            None => s.reads[r].step = ReadStep::Looked { version },
        }
    }

    fn put(&self, s: &mut State, r: usize) {
        let ReadStep::Loaded { version, data } = s.reads[r].step else {
            return;
        };
        let on = usize::from(s.reads[r].on);
        if s.reachable[on] {
            s.shard.write(Op::Put { version, data });
        } else {
            s.instances[on].closed = false;
        }
        finish(s, r, data, Served::Miss);
    }

    fn replay_bump(&self, s: &mut State, on: usize) {
        let snapshot = s.instances[on].owed;
        let rows = s.outbox;
        if rows == 0 {
            return settle_and_close(s, on, snapshot);
        }
        s.used.replays += 1;
        let pos = self.bump_counter(s);
        if self.variant == Variant::BumpCountedWithoutReplica {
            return self.replay_delivered(s, on, snapshot, rows);
        }
        s.instances[on].recovery = Recovery::Bumped {
            snapshot,
            rows,
            epoch: s.shard.epoch,
            pos,
        };
    }

    fn replay_wait(&self, s: &mut State, on: usize, replicated: bool) {
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
        if replicated {
            s.shard.replicate_up_to(pos);
            self.replay_delivered(s, on, snapshot, rows);
        }
    }

    fn replay_delivered(&self, s: &mut State, on: usize, snapshot: Option<u8>, rows: u8) {
        s.outbox &= !rows;
        if s.shard.epoch > 0 {
            s.replayed_after_failover = true;
        }
        settle_and_close(s, on, snapshot);
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

/// A counter takes `value`; records whether it had held it before.
fn issue(s: &mut State, value: u8) {
    assert!(
        value < 64,
        "the bounds let versions outgrow the model's bit set"
    );
    if s.issued & (1 << value) != 0 {
        s.repeated = true;
    }
    s.issued |= 1 << value;
    s.clock = s.clock.max(value + 1);
}

fn finish(s: &mut State, r: usize, data: u8, served: Served) {
    let read = &mut s.reads[r];
    s.stale |= data < read.floor;
    s.stale_in_notify_window |= data < read.strict_floor;
    read.step = ReadStep::Done(served);
}

/// Merges states that differ only in what no later step reads: owe
/// sequence numbers are renumbered (only their equality matters), finished
/// reads and answered writes forget their instance.
fn normalize(s: &mut State) {
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
}

/// Processes are identical until they start, so they start in index order.
fn next_to_start<T>(items: &[T], not_started: impl Fn(&T) -> bool) -> Option<usize> {
    items.iter().position(not_started)
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let instance = Instance {
            // In the code the breaker starts open and recovery closes it over
            // an empty outbox; the model starts after that.
            closed: true,
            owed: None,
            owe_sequence: 0,
            seen_epoch: 0,
            recovery: Recovery::Idle,
        };
        vec![State {
            db: 0,
            outbox: 0,
            shard: Shard {
                master: Node::default(),
                replica: Node::default(),
                backlog: Vec::new(),
                replicated: 0,
                epoch: 0,
            },
            clock: 1,
            issued: 0,
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
            replayed_after_failover: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        // While the instances are interchangeable, the first thing that
        // singles one out happens on instance 0 (swapping them is a symmetry).
        let interchangeable = s.instances[0] == s.instances[1]
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
                WriteStep::Committed => actions.push(Action::Bump { write: write_id }),
                WriteStep::Bumped { epoch, pos } => {
                    for replicated in self.wait_outcomes(s, write.on, epoch, pos) {
                        actions.push(Action::Wait {
                            write: write_id,
                            replicated,
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
        if let Some(r) = next_to_start(&s.reads, |r| r.step == ReadStep::NotStarted) {
            for on in instances.clone() {
                actions.push(Action::StartRead { read: r as u8, on });
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
                Recovery::Bumped { epoch, pos, .. } => {
                    // (`epoch` and `pos` say which write the WAIT is for.)
                    for replicated in self.wait_outcomes(s, on, epoch, pos) {
                        actions.push(Action::ReplayWait { on, replicated });
                    }
                }
            }
            if instance.seen_epoch != s.shard.epoch {
                actions.push(Action::NoticeFailover { on });
            }
            if s.reachable[i] {
                if s.used.outages < self.bounds.outages {
                    actions.push(Action::Cut { on });
                }
            } else {
                actions.push(Action::Heal { on });
            }
        }
        if s.used.failovers < self.bounds.failovers {
            for shipped in 0..=s.shard.backlog.len() as u8 {
                actions.push(Action::Failover { shipped });
            }
        }
        if s.used.counter_losses < self.bounds.counter_losses && s.shard.master.counter.is_some() {
            actions.push(Action::LoseCounter);
        }
        if s.used.purges < self.bounds.purges
            && let Some(current) = s.shard.master.counter
            && s.shard.master.entries.iter().any(|e| e.0 < current)
        {
            actions.push(Action::Purge);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::StartWrite { write, on } => self.start_write(&mut s, usize::from(write), on),
            Action::Bump { write } => self.bump(&mut s, usize::from(write)),
            Action::Wait { write, replicated } => self.wait(&mut s, usize::from(write), replicated),
            Action::StartRead { read, on } => self.start_read(&mut s, usize::from(read), on),
            Action::Load { read } => {
                let r = usize::from(read);
                if let ReadStep::Looked { version } = s.reads[r].step {
                    s.reads[r].step = ReadStep::Loaded {
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
            Action::ReplayBump { on } => self.replay_bump(&mut s, usize::from(on)),
            Action::ReplayWait { on, replicated } => {
                self.replay_wait(&mut s, usize::from(on), replicated)
            }
            Action::Failover { shipped } => {
                s.used.failovers += 1;
                let shard = &mut s.shard;
                shard.replicate_up_to(shard.replicated + shipped);
                shard.master = shard.replica.clone();
                shard.backlog.clear();
                shard.replicated = 0;
                shard.epoch += 1;
            }
            Action::NoticeFailover { on } => {
                let instance = &mut s.instances[usize::from(on)];
                instance.seen_epoch = s.shard.epoch;
                instance.closed = false;
            }
            Action::LoseCounter => {
                s.used.counter_losses += 1;
                s.shard.write(Op::Counter(None));
            }
            Action::Purge => {
                s.used.purges += 1;
                let current = s.shard.master.counter?;
                let stale: Vec<u8> = s
                    .shard
                    .master
                    .entries
                    .iter()
                    .map(|e| e.0)
                    .filter(|&v| v < current)
                    .collect();
                for version in stale {
                    s.shard.write(Op::Unlink { version });
                }
            }
            Action::Cut { on } => {
                s.used.outages += 1;
                s.reachable[usize::from(on)] = false;
            }
            Action::Heal { on } => s.reachable[usize::from(on)] = true,
        }
        normalize(&mut s);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::<Self>::always(FRESH_READS, |_, s| !s.stale),
            Property::<Self>::always(VERSIONS_NEVER_REPEAT, |_, s| !s.repeated),
            Property::<Self>::always(FRESH_READS_IN_NOTIFY_WINDOW, |_, s| {
                !s.stale_in_notify_window
            }),
            Property::<Self>::sometimes(A_HIT, |_, s| {
                s.reads
                    .iter()
                    .any(|r| r.step == ReadStep::Done(Served::Hit))
            }),
            Property::<Self>::sometimes(A_FAILOVER, |_, s| s.shard.epoch > 0),
            Property::<Self>::sometimes(A_REPLAY_AFTER_FAILOVER, |_, s| s.replayed_after_failover),
            Property::<Self>::sometimes(A_HIT_AFTER_A_FAILOVER_REPLAY, |_, s| {
                s.replayed_after_failover
                    && s.reads
                        .iter()
                        .any(|r| r.step == ReadStep::Done(Served::Hit))
            }),
        ]
    }
}

/// No read that starts after a write is acknowledged returns older data
/// (except inside the documented `NOTIFY` window: see the next one).
pub const FRESH_READS: &str = "no read starting after an acknowledged write returns older data";
/// A counter never takes a value it held before, across losses and failovers.
pub const VERSIONS_NEVER_REPEAT: &str = "versions never repeat";
/// The same as [`FRESH_READS`] without the exception docs/RUNNING.md documents
/// (`cache::listener`): a read on another instance that starts after an
/// owed write answered but before its `NOTIFY` was handled. Expected to fail.
pub const FRESH_READS_IN_NOTIFY_WINDOW: &str =
    "fresh reads even before the other instance handled the NOTIFY (known window)";
pub const A_HIT: &str = "a read is a HIT";
pub const A_FAILOVER: &str = "a failover happens";
pub const A_REPLAY_AFTER_FAILOVER: &str = "owed bumps are replayed on a promoted master";
pub const A_HIT_AFTER_A_FAILOVER_REPLAY: &str = "a HIT follows a replay on a promoted master";
