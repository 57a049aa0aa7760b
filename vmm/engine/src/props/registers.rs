//! Hypercall registers: any value in any register decodes to exactly what
//! the ABI's table says (docs/ABI.md), reading only RAX, RDI, RSI and RDX.

use crate::hypercall::GuestRequest;
use kvm_bindings::kvm_regs;
use proptest::prelude::*;

/// The ABI's table, written out independently of the decoder.
fn expected(r: &kvm_regs) -> GuestRequest {
    match r.rax {
        1 => GuestRequest::Hello { addr: r.rdi },
        2 => GuestRequest::Ready,
        3 => GuestRequest::Print {
            addr: r.rdi,
            len: r.rsi,
        },
        4 => GuestRequest::Call {
            request: r.rdi,
            budget_us: r.rsi,
            wait_us: r.rdx,
        },
        5 => GuestRequest::Return {
            status: r.rdi,
            results: [r.rsi, r.rdx],
        },
        6 => GuestRequest::Nop,
        7 => GuestRequest::Panic {
            addr: r.rdi,
            len: r.rsi,
        },
        8 => GuestRequest::Exit { code: r.rdi },
        9 => GuestRequest::Spawn {
            entry: r.rdi,
            arg: r.rsi,
        },
        number => GuestRequest::Unknown { number },
    }
}

fn regs_from(w: [u64; 18]) -> kvm_regs {
    kvm_regs {
        rax: w[0],
        rbx: w[1],
        rcx: w[2],
        rdx: w[3],
        rsi: w[4],
        rdi: w[5],
        rsp: w[6],
        rbp: w[7],
        r8: w[8],
        r9: w[9],
        r10: w[10],
        r11: w[11],
        r12: w[12],
        r13: w[13],
        r14: w[14],
        r15: w[15],
        rip: w[16],
        rflags: w[17],
    }
}

/// RAX as a fuzzer would set it: known numbers, their neighbours, known
/// numbers with high bits set (which must not be truncated into known
/// ones), anything.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..12,
        1 => (0u64..12, 1u32..64).prop_map(|(n, bit)| n | (1 << bit)),
        1 => any::<u64>(),
        1 => Just(u64::MAX),
    ]
}

#[test]
fn any_registers_decode_as_the_abi_table_says() {
    let strategy = (
        number(),
        proptest::array::uniform17(any::<u64>()),
        proptest::array::uniform18(any::<u64>()),
    );
    let known = std::cell::Cell::new(0u32);
    super::runner()
        .run(&strategy, |(rax, rest, other)| {
            let mut w = [0u64; 18];
            w[0] = rax;
            w[1..].copy_from_slice(&rest);
            let r = regs_from(w);
            let got = GuestRequest::decode(&r);
            prop_assert_eq!(got, expected(&r));
            // Only RAX, RDI, RSI and RDX are read: every other register
            // may hold anything.
            let mut o = regs_from(other);
            (o.rax, o.rdi, o.rsi, o.rdx) = (r.rax, r.rdi, r.rsi, r.rdx);
            prop_assert_eq!(GuestRequest::decode(&o), got);
            if !matches!(got, GuestRequest::Unknown { .. }) {
                known.set(known.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    // The generator reaches every known number, not only the Unknown arm.
    let known = known.get();
    assert!(known > super::CASES / 10, "{known} known numbers decoded");
}
