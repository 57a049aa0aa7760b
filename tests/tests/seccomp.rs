//! Seccomp, proven in child processes: each test re-runs this binary's
//! ignored `child` test with `FERRY_SECCOMP_CASE` naming a case, so the
//! filters land only on the child's VMM threads, never on the harness's.
//!
//! The workload (every thread started by `System::run`, so every one runs
//! confined): migrating calls with objects, a fault and the restart it
//! causes (on the confined restarter), a CPU budget that runs out (the
//! SIGRTMIN kick lands on a confined thread), spawned threads, and calls
//! into a message-mode domain (a confined server). An observer runs on the
//! threads that run the calls; on cue it makes a system call the filter
//! does not allow, and the child must die with status 159 and one line
//! naming the thread and the call. The same workload without the cue must
//! succeed with the filter on. Alone in its test binary: it starts
//! processes and counts nothing else.

mod common;

use common::{boot_observed, chain, testguest, DRIVE_BASIC_CAPS};
use ferry_engine::ids::{DomainId, Slot};
use ferry_engine::manifest::{Document, DomainEntry, Ipc, Millis, ThreadEntry};
use ferry_engine::observe::{CallEvent, CallObserver};
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::thread::ThreadResult;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

const CASE: &str = "FERRY_SECCOMP_CASE";

/// What the observer does on its cue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cue {
    /// Nothing disallowed: it only tries `openat`, which must fail with EACCES.
    Nothing,
    /// `socket(2)` on a migrating thread (in `b.echo`'s completion).
    SocketMigrating,
    /// `socket(2)` on a message-mode server thread (in `m.echo`'s).
    SocketServer,
    /// `ioctl(2)` with a terminal request (not a KVM one) on a migrating thread.
    IoctlMigrating,
}

impl Cue {
    fn parse(s: &str) -> Self {
        match s {
            "socket-migrating" | "socket-unfiltered" => Cue::SocketMigrating,
            "socket-server" => Cue::SocketServer,
            "ioctl-migrating" => Cue::IoctlMigrating,
            _ => Cue::Nothing,
        }
    }
}

/// Watches calls; makes its cue's system call on the thread that reports
/// the matching call, and records what `openat` answered there.
struct Provoker {
    cue: Cue,
    completed: AtomicU64,
    /// errno of an `openat` tried on a thread that ran a call (0: it worked).
    open_errno: AtomicI32,
    /// Result of the cue's system call when the process survived it.
    cue_result: AtomicI32,
}

impl CallObserver for Provoker {
    fn completed(&self, event: &CallEvent<'_>) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if event.entry == "echo" && event.callee_name == "b" {
            // SAFETY: a plain open of /dev/null, closed at once if it worked.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
            let errno = if fd < 0 {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
            } else {
                // SAFETY: `fd` was just opened by this thread.
                unsafe { libc::close(fd) };
                0
            };
            self.open_errno.store(errno, Ordering::Relaxed);
        }
        let on_cue = match self.cue {
            Cue::Nothing => false,
            Cue::SocketMigrating | Cue::IoctlMigrating => {
                event.entry == "echo" && event.callee_name == "b"
            }
            Cue::SocketServer => event.callee_name == "m",
        };
        if !on_cue {
            return;
        }
        let rc = match self.cue {
            // SAFETY: creating a socket has no memory-safety preconditions.
            Cue::SocketMigrating | Cue::SocketServer => unsafe {
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0)
            },
            Cue::IoctlMigrating => {
                let mut size = libc::winsize {
                    ws_row: 0,
                    ws_col: 0,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCGWINSZ writes a winsize into `size`, a live local.
                unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut size) }
            }
            Cue::Nothing => 0,
        };
        self.cue_result.store(rc, Ordering::Relaxed);
    }

    fn refused(&self, _: DomainId, _: Slot, _: ErrorCode) {}
}

/// The workload: every kind of work a thread running guest code does.
fn workload() -> Document {
    Document::default()
        .domain(testguest("driver", DRIVE_BASIC_CAPS))
        .domain(testguest("b", &[]))
        .domain(testguest("faulter", &["target.ud2", "target.sites"]))
        .domain(testguest("target", &[]))
        .domain(testguest("limited", &["spinner.spin_forever"]))
        .domain(testguest("spinner", &[]).limits(Millis::Ms(20), Millis::Ms(2000), 1000))
        .domain(testguest("spawner", &[]))
        .domain(testguest("mdriver", &["m.echo"]))
        .domain(testguest("m", &[]).ipc(Ipc::Message))
        .domain(
            DomainEntry::new("lender", "leaser")
                .exports(["drive"])
                .capabilities(["borrower.inc_inout"]),
        )
        .domain(DomainEntry::new("borrower", "leaser").exports(["inc_inout"]))
        .thread(ThreadEntry::new("driver", "drive_basic", &[]))
        .thread(ThreadEntry::new("faulter", "drive_fault", &[0]))
        .thread(ThreadEntry::new("limited", "call_limited", &[]))
        .thread(ThreadEntry::new("spawner", "spawner", &[2]))
        .thread(ThreadEntry::new("mdriver", "forward", &[7, 8]))
        // An INOUT object of 4 pages lent (a memory slot added and deleted).
        .thread(ThreadEntry::new(
            "lender",
            "drive",
            &[0, 0x4000, 3, 1, 0, 0],
        ))
}

fn returned(outcome: &ThreadResult) -> [u64; 2] {
    match outcome {
        ThreadResult::Returned { status: 0, results } => *results,
        other => panic!("thread did not return success: {other:?}"),
    }
}

/// The child: boots the workload with the observer, runs it, checks it,
/// and (if it is still alive) shows that its own thread is not filtered.
#[test]
#[ignore = "run in a child process by the other tests of this file"]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    if case == "socket-unfiltered" {
        ferry_engine::sandbox::set_enabled(false);
    }
    let provoker = Arc::new(Provoker {
        cue: Cue::parse(&case),
        completed: AtomicU64::new(0),
        open_errno: AtomicI32::new(-1),
        cue_result: AtomicI32::new(0),
    });
    let (_dog, sys) = boot_observed("seccomp child", workload(), provoker.clone());
    let outcomes = sys.run();
    let by_start = |start: &str| {
        outcomes
            .iter()
            .find(|o| o.start == start)
            .unwrap_or_else(|| panic!("no outcome for {start}"))
    };
    for o in &outcomes {
        println!("outcome {}: {:?}", o.start, o.result);
    }
    returned(&by_start("driver.drive_basic").result);
    // ud2 (vector 6) at the label `sites` gave: the fault came back.
    assert_eq!(returned(&by_start("faulter.drive_fault").result), [6, 0]);
    // The budget ran out in `spinner` and the kick stopped it: Timeout.
    let limited = returned(&by_start("limited.call_limited").result);
    assert_eq!(limited[0], ErrorCode::Timeout as u64, "{limited:?}");
    assert_eq!(returned(&by_start("spawner.spawner").result), [2, 0]);
    assert_eq!(returned(&by_start("mdriver.forward").result), [7, 8]);
    let [lent_at, word] = returned(&by_start("lender.drive").result);
    assert_eq!(word & 0xffff_ffff, 0, "the lending call succeeded");
    assert_eq!(lent_at, ferry_engine::shared_abi::layout::LEASE_WINDOW_BASE);
    assert_eq!(sys.domain_by_name("borrower").unwrap().memory_slots(), 1);
    let spawned = sys.spawn_tally();
    assert_eq!((spawned.ended, spawned.succeeded), (2, 2), "{spawned:?}");
    // The restart ran on the confined restarter.
    let target = sys.domain_by_name("target").unwrap();
    common::settled(target);
    assert_eq!(target.generation(), 1);
    assert_eq!(target.health(), ferry_engine::domain::Health::Running);
    println!("workload: all threads returned as expected");
    println!(
        "observer: {} calls; openat on a migrating thread: errno {}",
        provoker.completed.load(Ordering::Relaxed),
        provoker.open_errno.load(Ordering::Relaxed)
    );
    println!(
        "cue result: {}",
        provoker.cue_result.load(Ordering::Relaxed)
    );
    // This thread (the harness's) was never confined: it may open files.
    assert!(!ferry_engine::sandbox::is_confined());
    assert!(std::fs::File::open("/dev/null").is_ok());
    println!("harness thread unfiltered");
}

/// Run the child for `case`.
fn spawn_child(case: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE, case)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot start the child: {}", chain(&e)))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Assert the child died from the filter, naming a thread that starts
/// with `thread` and system call `nr`; return its stderr.
fn assert_killed(out: &Output, thread: &str, nr: i64) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(ferry_engine::sandbox::EXIT_CODE),
        "child status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ferry: seccomp: thread `"))
        .unwrap_or_else(|| panic!("no seccomp line in stderr:\n{stderr}"));
    assert!(
        line.starts_with(&format!("ferry: seccomp: thread `{thread}"))
            && line.contains(&format!("` made system call {nr}, ")),
        "{line}"
    );
    assert!(
        !stdout.contains("workload: all threads returned"),
        "the child went on after the call:\n{stdout}"
    );
    stderr
}

#[test]
fn the_workload_runs_under_the_filter_and_openat_fails_cleanly() {
    let out = spawn_child("clean");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "child status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("workload: all threads returned as expected"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "openat on a migrating thread: errno {}",
            libc::EACCES
        )),
        "{stdout}"
    );
    assert!(stdout.contains("harness thread unfiltered"), "{stdout}");
    assert!(!stderr.contains("ferry: seccomp"), "{stderr}");
}

#[test]
fn a_disallowed_call_on_a_migrating_thread_ends_the_process() {
    let out = spawn_child("socket-migrating");
    assert_killed(&out, "ferry-t", libc::SYS_socket);
}

#[test]
fn a_disallowed_call_on_a_server_thread_ends_the_process() {
    let out = spawn_child("socket-server");
    assert_killed(&out, "ferry-m-server", libc::SYS_socket);
}

#[test]
fn an_ioctl_that_is_not_a_kvm_request_ends_the_process() {
    let out = spawn_child("ioctl-migrating");
    assert_killed(&out, "ferry-t", libc::SYS_ioctl);
}

/// With the filter off (`ferry --no-seccomp`), the same call goes through.
#[test]
fn with_the_filter_off_the_same_call_succeeds() {
    let out = spawn_child("socket-unfiltered");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "child status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let rc: i32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cue result: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cue result:\n{stdout}"));
    assert!(rc >= 0, "socket failed unfiltered: {rc}");
    assert!(
        stdout.contains("openat on a migrating thread: errno 0"),
        "{stdout}"
    );
}
