//! A domain's pool of stacks: taking and giving back one is a lock-free
//! queue operation, so threads entering the same domain never serialise on it.

use crossbeam_queue::ArrayQueue;

/// The free stacks of one domain, by index into its layout.
#[derive(Debug)]
pub struct StackPool {
    free: ArrayQueue<u32>,
    count: u32,
}

impl StackPool {
    /// A pool holding stacks `0..count`, all free.
    pub fn new(count: u32) -> Self {
        let free = ArrayQueue::new(count.max(1) as usize);
        for i in 0..count {
            // Cannot fail: the queue was sized for exactly these.
            let _ = free.push(i);
        }
        Self { free, count }
    }

    /// Take a free stack, if any.
    pub fn take(&self) -> Option<u32> {
        self.free.pop()
    }

    /// Give stack `index` back. Giving back a stack that is not out is a
    /// VMM bug; it is refused rather than duplicated.
    pub fn give_back(&self, index: u32) {
        if index >= self.count || self.free.push(index).is_err() {
            log::error!("stack {index} given back twice or out of range");
        }
    }

    /// Stacks currently free.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Stacks in the pool.
    pub fn capacity(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_all_then_give_back() {
        let p = StackPool::new(3);
        let taken: Vec<_> = std::iter::from_fn(|| p.take()).collect();
        assert_eq!(taken.len(), 3);
        assert_eq!(p.take(), None);
        for t in taken {
            p.give_back(t);
        }
        assert_eq!(p.free_count(), 3);
        p.give_back(7);
        assert_eq!(p.free_count(), 3);
    }
}
