//! Independent jobs on a few host threads, with the results and the first
//! error exactly as running them one after another would give: the boot of
//! many domains uses every core without changing what a failing boot says.
//!
//! Workers take the next index from one shared counter, so indexes are
//! handed out in order. After a job fails no further index is handed out;
//! every index below it was handed out before it and runs to its end, so the
//! failure reported (the lowest failing index) is the one a sequential run
//! would have stopped at.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Environment variable capping the boot's worker threads (`1`: one after
/// another, as before boots were parallel; for measurements and bisection).
pub const WORKERS_ENV: &str = "FERRY_BOOT_THREADS";

/// Workers for `jobs` independent jobs: the host's parallelism, capped by
/// [`WORKERS_ENV`] if set, never more than the jobs and never fewer than 1.
pub fn workers_for(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cap = std::env::var(WORKERS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(cores);
    cores.min(cap).min(jobs).max(1)
}

/// Run `job(worker_state, index, item)` for every item on up to `workers`
/// threads, the calling one among them (`init` makes each worker's state
/// once, on that worker's thread).
/// Returns the results in item order, or the error of the lowest index that
/// failed. A job that panics is resumed as a panic on the calling thread
/// (the jobs here do not panic; that is no place to invent an error).
pub fn run_indexed<I, T, E, S>(
    items: Vec<I>,
    workers: usize,
    init: impl Fn() -> S + Sync,
    job: impl Fn(&mut S, usize, I) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E>
where
    I: Send,
    T: Send,
    E: Send,
{
    let n = items.len();
    if workers <= 1 || n <= 1 {
        let mut state = init();
        return items
            .into_iter()
            .enumerate()
            .map(|(i, item)| job(&mut state, i, item))
            .collect();
    }
    let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut state = init();
        let mut done = Vec::new();
        while !failed.load(Ordering::Acquire) {
            let i = next.fetch_add(1, Ordering::AcqRel);
            let Some(item) = slots
                .get(i)
                .and_then(|m| m.lock().ok().and_then(|mut g| g.take()))
            else {
                break;
            };
            let r = job(&mut state, i, item);
            if r.is_err() {
                failed.store(true, Ordering::Release);
            }
            done.push((i, r));
        }
        done
    };
    let per_worker: Vec<Vec<(usize, Result<T, E>)>> = std::thread::scope(|s| {
        // The calling thread is one of the workers; a helper that cannot be
        // started leaves its share to the others.
        let helpers: Vec<_> = (1..workers.min(n))
            .filter_map(|k| {
                std::thread::Builder::new()
                    .name(format!("ferry-boot{k}"))
                    .spawn_scoped(s, work)
                    .inspect_err(|e| log::warn!("one boot worker fewer: {e}"))
                    .ok()
            })
            .collect();
        let mut all = vec![work()];
        all.extend(
            helpers
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
        );
        all
    });
    let mut all: Vec<(usize, Result<T, E>)> = per_worker.into_iter().flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    // Every index below the lowest failure ran (see the module's doc), so
    // collecting in order yields that failure, or all n results.
    all.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order() {
        let items: Vec<u64> = (0..500).collect();
        let out = run_indexed(items, 4, || 0u64, |_, i, x| Ok::<_, ()>((i as u64, x * 2)))
            .expect("no job fails");
        assert_eq!(out.len(), 500);
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, (j, x))| *j == i as u64 && *x == 2 * *j));
    }

    #[test]
    fn the_lowest_failing_index_is_reported_and_work_stops() {
        let ran = AtomicUsize::new(0);
        let items: Vec<usize> = (0..10_000).collect();
        let r = run_indexed(
            items,
            4,
            || (),
            |_, i, _| {
                ran.fetch_add(1, Ordering::Relaxed);
                // Later indexes fail faster: a naive "first to fail" would
                // often report 90 or 95.
                if i == 70 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                if i == 70 || i == 90 || i == 95 {
                    Err(i)
                } else {
                    Ok(i)
                }
            },
        );
        assert_eq!(r, Err(70));
        assert!(
            ran.load(Ordering::Relaxed) < 10_000,
            "work went on after a failure"
        );
    }

    #[test]
    fn each_worker_makes_its_state_once() {
        let inits = AtomicUsize::new(0);
        let out = run_indexed(
            vec![(); 100],
            3,
            || {
                inits.fetch_add(1, Ordering::Relaxed);
                0usize
            },
            |seen, _, ()| {
                *seen += 1;
                Ok::<_, ()>(*seen)
            },
        )
        .expect("no job fails");
        assert!(inits.load(Ordering::Relaxed) <= 3);
        assert_eq!(out.len(), 100);
    }

    #[test]
    fn one_worker_runs_in_order_on_the_calling_thread() {
        let me = std::thread::current().id();
        let out = run_indexed(
            vec![1, 2, 3],
            1,
            || (),
            |_, _, x| {
                assert_eq!(std::thread::current().id(), me);
                Ok::<_, ()>(x)
            },
        );
        assert_eq!(out, Ok(vec![1, 2, 3]));
    }

    #[test]
    fn workers_are_at_least_one_and_at_most_the_jobs() {
        assert_eq!(workers_for(0), 1);
        assert_eq!(workers_for(1), 1);
        assert!(workers_for(1000) >= 1);
    }
}
