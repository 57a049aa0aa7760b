//! The soak's referee: the VMM's own model of `kv`, built from the bytes the
//! engine copied, checked against every answer kv gives and every answer
//! the relay passes on.
//!
//! kv restarts empty (the soak crashes it at times), so the model is kept
//! per kv generation: an answer is judged against the model of the
//! generation that gave it. State lost by a restart is expected and counted
//! (`forgotten`), never a lost result. Each client thread owns its keys, and
//! the engine reports a thread's calls in the order they returned, so one
//! key's operations reach the model in order.

use ferry_engine::ids::{DomainId, Slot};
use ferry_engine::observe::{CallEvent, CallObserver};
use kv_api::KvError;
use shared_abi::ErrorCode;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// The status word of kv's `NotFound`, as the engine reports it.
const KV_NOT_FOUND: u64 = shared_abi::APP_ERROR_BASE + KvError::NotFound as u64;
/// The status word of kv's `LogFailed` (its log call failed, nothing
/// stored).
const KV_LOG_FAILED: u64 = shared_abi::APP_ERROR_BASE + KvError::LogFailed as u64;
/// The relay's own statuses (`0x100 | code`: its call to kv failed) and above.
const RELAY_OWN_ERRORS: u64 = shared_abi::APP_ERROR_BASE + 0x100;
/// Generations of kv whose models are kept: an answer from an older one
/// (a late report racing a restart) is counted as unjudged.
const KEPT_GENERATIONS: usize = 4;
/// Mismatches described in full (all are counted).
const DESCRIBED: usize = 20;

/// Everything the referee counted.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// kv answers judged against the model.
    pub judged: u64,
    /// Relay answers compared with the kv answer they passed on.
    pub relayed: u64,
    /// A get or delete said "missing" for a key the model holds in that
    /// generation.
    pub lost: u64,
    /// A value differed from the model's, a key came back that the model
    /// does not hold, or the relay changed kv's answer.
    pub corrupted: u64,
    /// kv answers its caller never got (the relay went down meanwhile):
    /// their effects are applied to the model all the same.
    pub undelivered: u64,
    /// Answers from a generation older than the models kept.
    pub unjudged: u64,
    /// Keys held when kv restarted (lost with its memory, as documented).
    pub forgotten: u64,
    /// kv generations seen.
    pub generations: u64,
    /// Refusals seen by the observer, by code (including faults of callees
    /// and budget expiries, which the observer also reports).
    pub refusals: BTreeMap<String, u64>,
    /// The first mismatches, described.
    pub mismatches: Vec<String>,
}

#[derive(Default)]
struct State {
    /// kv generation → key → value.
    models: BTreeMap<u64, HashMap<Vec<u8>, Vec<u8>>>,
    /// The last kv `get` answer each thread saw: (status, value bytes).
    last_get: HashMap<u64, (u64, Vec<u8>)>,
    verdict: Verdict,
}

impl State {
    fn mismatch(&mut self, what: String) {
        if self.verdict.mismatches.len() < DESCRIBED {
            self.verdict.mismatches.push(what);
        }
    }

    /// The model of generation `g`, or `None` if it is older than those kept.
    fn model(&mut self, g: u64) -> Option<&mut HashMap<Vec<u8>, Vec<u8>>> {
        let newest = self.models.keys().next_back().copied();
        if newest.is_some_and(|n| g < n) && !self.models.contains_key(&g) {
            return None;
        }
        if newest.is_none_or(|n| g > n) {
            if let Some(old) = newest.and_then(|n| self.models.get(&n)) {
                self.verdict.forgotten += old.len() as u64;
            }
            self.verdict.generations += 1;
            self.models.insert(g, HashMap::new());
            while self.models.len() > KEPT_GENERATIONS {
                self.models.pop_first();
            }
        }
        self.models.get_mut(&g)
    }

    /// Judge kv's answer and apply its effect. An undelivered answer (the
    /// caller went down before it arrived) changed kv all the same, but
    /// carries no OUT bytes to compare.
    fn kv(&mut self, ev: &CallEvent<'_>, delivered: bool) {
        let key = match ev.objects.first() {
            Some(k) => k.input.clone(),
            None => return,
        };
        let thread = ev.thread.raw();
        let g = ev.callee_generation;
        let Some(model) = self.model(g) else {
            self.verdict.unjudged += 1;
            return;
        };
        let held = model.get(&key).cloned();
        let shown = String::from_utf8_lossy(&key).into_owned();
        match (ev.entry, ev.status) {
            ("put", 0) => {
                if let Some(v) = ev.objects.get(1) {
                    model.insert(key, v.input.clone());
                }
            }
            ("put", KV_LOG_FAILED) => {}
            ("delete", 0) => {
                model.remove(&key);
                if held.is_none() {
                    self.verdict.corrupted += 1;
                    self.mismatch(format!(
                        "kv gen {g}: delete of {shown} succeeded, model holds no such key"
                    ));
                }
            }
            ("delete" | "get", KV_NOT_FOUND) => {
                if held.is_some() {
                    self.verdict.lost += 1;
                    self.mismatch(format!(
                        "kv gen {g}: {} of {shown} said missing, model holds it",
                        ev.entry
                    ));
                }
                if ev.entry == "get" && delivered {
                    self.last_get.insert(thread, (ev.status, Vec::new()));
                }
            }
            ("get", 0) if !delivered => {}
            ("get", 0) => {
                let len = usize::try_from(ev.results[0]).unwrap_or(usize::MAX);
                let got = ev.objects.get(1).and_then(|v| v.output.get(..len));
                match (got, &held) {
                    (Some(got), Some(want)) if got == &want[..] => {}
                    (got, want) => {
                        self.verdict.corrupted += 1;
                        self.mismatch(format!(
                            "kv gen {g}: get of {shown} gave {} bytes, model holds {}",
                            got.map_or(-1, |b| i64::try_from(b.len()).unwrap_or(i64::MAX)),
                            want.as_ref()
                                .map_or(-1, |w| { i64::try_from(w.len()).unwrap_or(i64::MAX) })
                        ));
                    }
                }
                self.last_get
                    .insert(thread, (0, got.map(<[u8]>::to_vec).unwrap_or_default()));
            }
            (entry, status) => {
                self.verdict.corrupted += 1;
                self.mismatch(format!(
                    "kv gen {g}: {entry} of {shown} answered status {status:#x}, not in kv's contract"
                ));
            }
        }
        self.verdict.judged += 1;
    }

    /// A relay `get` passes kv's answer on unchanged: its status is kv's,
    /// and its value the bytes kv returned on the same thread just before.
    fn relay(&mut self, ev: &CallEvent<'_>) {
        if ev.entry != "get" {
            return;
        }
        let last = self.last_get.remove(&ev.thread.raw());
        if ev.status >= RELAY_OWN_ERRORS {
            // kv never answered this get (it was down or refused the call):
            // the relay answered with an error of its own.
            return;
        }
        let Some((kv_status, kv_value)) = last else {
            self.verdict.corrupted += 1;
            self.mismatch(format!(
                "relay get on thread {}: answered status {:#x} though kv never answered it",
                ev.thread, ev.status
            ));
            return;
        };
        self.verdict.relayed += 1;
        let status_ok = ev.status == kv_status;
        let len = usize::try_from(ev.results[0]).unwrap_or(usize::MAX);
        let value_ok = ev.status != 0
            || ev
                .objects
                .get(1)
                .and_then(|v| v.output.get(..len))
                .is_some_and(|got| got == &kv_value[..]);
        if !(status_ok && value_ok) {
            self.verdict.corrupted += 1;
            self.mismatch(format!(
                "relay get on thread {}: answered status {:#x} ({} bytes), kv had answered {kv_status:#x} ({} bytes)",
                ev.thread,
                ev.status,
                ev.results[0],
                kv_value.len()
            ));
        }
    }
}

/// The referee, installed as the system's call observer.
#[derive(Default)]
pub struct Referee {
    state: Mutex<State>,
    /// Name of the kv domain and of the relay domain.
    names: (String, String),
}

impl Referee {
    /// A referee for the kv domain `kv` and the relay domain `relay`.
    pub fn new(kv: &str, relay: &str) -> Self {
        Self {
            state: Mutex::default(),
            names: (kv.to_owned(), relay.to_owned()),
        }
    }

    /// What it has counted so far.
    pub fn verdict(&self) -> Verdict {
        self.state
            .lock()
            .map(|s| s.verdict.clone())
            .unwrap_or_default()
    }
}

impl CallObserver for Referee {
    fn completed(&self, ev: &CallEvent<'_>) {
        let Ok(mut s) = self.state.lock() else { return };
        if ev.callee_name == self.names.0 {
            s.kv(ev, true);
        } else if ev.callee_name == self.names.1 {
            s.relay(ev);
        }
    }

    fn undelivered(&self, ev: &CallEvent<'_>) {
        let Ok(mut s) = self.state.lock() else { return };
        if ev.callee_name == self.names.0 {
            s.verdict.undelivered += 1;
            s.kv(ev, false);
        }
    }

    fn refused(&self, _caller: DomainId, _slot: Slot, code: ErrorCode) {
        if let Ok(mut s) = self.state.lock() {
            *s.verdict.refusals.entry(format!("{code:?}")).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::ids::ThreadId;
    use ferry_engine::observe::ObservedObject;
    use shared_abi::ArgMode;

    fn obj(mode: ArgMode, input: &[u8], output: &[u8]) -> ObservedObject {
        ObservedObject {
            mode,
            input: input.to_vec(),
            output: output.to_vec(),
        }
    }

    /// Feed one kv (or relay) answer to `r`.
    fn feed(
        r: &Referee,
        callee: &str,
        entry: &str,
        generation: u64,
        status: u64,
        objects: &[ObservedObject],
        delivered: bool,
    ) {
        let len = objects.get(1).map_or(0, |o| o.output.len() as u64);
        let ev = CallEvent {
            thread: ThreadId::new(1),
            caller: DomainId::new(0),
            slot: Slot::new(0),
            callee: DomainId::new(1),
            callee_name: callee,
            callee_generation: generation,
            entry,
            scalars: [0; shared_abi::MAX_SCALARS],
            objects,
            status,
            results: [len, 0],
            host_thread: std::thread::current().id(),
        };
        if delivered {
            r.completed(&ev);
        } else {
            r.undelivered(&ev);
        }
    }

    fn put(r: &Referee, g: u64, k: &[u8], v: &[u8], delivered: bool) {
        let objs = [obj(ArgMode::In, k, b""), obj(ArgMode::In, v, b"")];
        feed(r, "kv", "put", g, 0, &objs, delivered);
    }

    fn get(r: &Referee, g: u64, k: &[u8], answer: Option<&[u8]>) {
        let out = answer.unwrap_or(b"");
        let objs = [obj(ArgMode::In, k, b""), obj(ArgMode::Out, b"", out)];
        let status = if answer.is_some() { 0 } else { KV_NOT_FOUND };
        feed(r, "kv", "get", g, status, &objs, true);
    }

    #[test]
    fn honest_answers_pass() {
        let r = Referee::new("kv", "relay");
        put(&r, 0, b"a", b"one", true);
        get(&r, 0, b"a", Some(b"one"));
        get(&r, 0, b"b", None);
        let v = r.verdict();
        assert_eq!((v.lost, v.corrupted, v.judged), (0, 0, 3));
    }

    #[test]
    fn a_wrong_value_is_corrupted_and_a_missing_key_is_lost() {
        let r = Referee::new("kv", "relay");
        put(&r, 0, b"a", b"one", true);
        get(&r, 0, b"a", Some(b"two"));
        get(&r, 0, b"a", None);
        get(&r, 0, b"zzz", Some(b"ghost"));
        let v = r.verdict();
        assert_eq!((v.lost, v.corrupted), (1, 2));
        assert_eq!(v.mismatches.len(), 3);
    }

    #[test]
    fn a_restart_forgets_and_an_undelivered_put_still_counts() {
        let r = Referee::new("kv", "relay");
        put(&r, 0, b"a", b"one", true);
        // Generation 1: kv restarted empty; "a" is gone, as documented.
        get(&r, 1, b"a", None);
        // The caller went down before kv's answer arrived: stored anyway.
        put(&r, 1, b"b", b"two", false);
        get(&r, 1, b"b", Some(b"two"));
        let v = r.verdict();
        assert_eq!(
            (v.lost, v.corrupted, v.forgotten, v.undelivered),
            (0, 0, 1, 1)
        );
    }

    #[test]
    fn a_relay_that_changes_kvs_answer_is_caught() {
        let r = Referee::new("kv", "relay");
        put(&r, 0, b"a", b"one", true);
        get(&r, 0, b"a", Some(b"one"));
        let objs = [obj(ArgMode::In, b"a", b""), obj(ArgMode::Out, b"", b"onf")];
        feed(&r, "relay", "get", 0, 0, &objs, true);
        let v = r.verdict();
        assert_eq!((v.relayed, v.corrupted), (1, 1));
    }
}
