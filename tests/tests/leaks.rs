//! Fifty fault/restart cycles leave no trace: the same open files, the
//! same vCPUs, every stack back in its pool. (Alone in its test binary, so
//! no other test opens or closes files meanwhile.)

mod common;

use common::{boot, ok, testguest};
use ferry_engine::domain::Health;
use ferry_engine::manifest::Document;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn fifty_fault_restart_cycles_leak_nothing() {
    let doc = Document::default()
        .domain(testguest("driver", &["target.ud2", "target.sites"]))
        .domain(testguest("target", &[]));
    let (_dog, sys) = boot("fifty_fault_restart_cycles_leak_nothing", doc);
    let target = sys.domain_by_name("target").unwrap();
    // One warm-up cycle creates every vCPU the cycle needs.
    assert_eq!(
        ok(&sys.run_thread("driver", "drive_fault", &[0]).result),
        [6, 0]
    );
    let (fds, vcpus) = (
        open_fds(),
        sys.domains().iter().map(|d| d.vcpu_count()).sum::<u32>(),
    );
    for cycle in 0..50 {
        let r = ok(&sys.run_thread("driver", "drive_fault", &[0]).result);
        assert_eq!(r, [6, 0], "cycle {cycle}");
    }
    common::settled(target);
    assert_eq!(target.generation(), 51);
    assert_eq!(target.resets(), 51);
    assert_eq!(target.health(), Health::Running);
    assert_eq!(open_fds(), fds, "open file descriptors");
    assert_eq!(
        sys.domains().iter().map(|d| d.vcpu_count()).sum::<u32>(),
        vcpus,
        "vCPUs"
    );
    common::assert_all_returned(&sys);
}
