//! Message-mode server threads end with the system that started them. A
//! process of its own: it counts the process's threads by name.

mod common;

use common::{boot, ok, testguest, STACK_KIB};
use ferry_engine::manifest::{Document, Ipc};

/// Threads of this process whose name marks them as message-mode servers.
fn server_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("ferry-") && name.contains("-server"))
        .count()
}

/// Servers used to be asked to stop with `try_send` and never joined: with
/// a full inbox they never stopped, and they kept the VMs alive. Dropping a
/// system now stops and joins every server (with a bounded wait).
#[test]
fn dropping_a_system_joins_its_servers() {
    assert_eq!(server_threads(), 0);
    let doc = Document::default()
        .domain(testguest("driver", &["b.null"]))
        .domain(testguest("b", &[]).ipc(Ipc::Message).stacks(3, STACK_KIB));
    let (dog, sys) = boot("dropping_a_system_joins_its_servers", doc);
    // A new thread names itself once it runs: wait for all three.
    let start = std::time::Instant::now();
    while server_threads() < 3 && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(server_threads(), 3);
    assert_eq!(ok(&sys.run_thread("driver", "forward", &[]).result), [0, 0]);
    drop(sys);
    assert_eq!(
        server_threads(),
        0,
        "every server is gone once drop returns"
    );
    drop(dog);
}
