//! Who knew of what: the causal past of each folded roster operation as a vector clock
//! over its authors.
//!
//! An operation's clock holds, per author, the furthest chain position of that author's
//! operations it follows (through its dependencies), and its own position. A device
//! accepts an author's roster envelopes only in chain order, so whoever follows an
//! author's operation at position p also holds every earlier one: "j is in the past of
//! i" is one comparison, `clock[i][author(j)] >= position(j)`, and an author's own
//! operations follow each other in the order it wrote them.
//!
//! Memory is one `u32` per (operation, author) of the fold — the operations folded are
//! admins' and members' own (restrictions, emergencies), which the per-author bounds of
//! `core::limits` keep to a few hundred per device — instead of the n × n bits a set of
//! ancestors per operation takes.

use std::collections::HashMap;

use crate::core::ids::DeviceId;

pub(super) struct Ancestry {
    width: usize,
    /// Row-major clocks: `clocks[i * width + a]` is 1 + the furthest position of author
    /// `a` that operation `i` follows (0: none).
    clocks: Vec<u32>,
    author: Vec<u32>,
    position: Vec<u32>,
}

impl Ancestry {
    /// Room for `authors` (each operation's author and chain position), no clocks set.
    pub fn new(authors: &[DeviceId], seqs: &[u64]) -> Self {
        let mut index: HashMap<DeviceId, u32> = HashMap::new();
        let author: Vec<u32> = authors
            .iter()
            .map(|a| {
                let next = u32::try_from(index.len()).unwrap_or(u32::MAX);
                *index.entry(*a).or_insert(next)
            })
            .collect();
        let width = index.len();
        Ancestry {
            width,
            clocks: vec![0; width * authors.len()],
            author,
            position: seqs
                .iter()
                .map(|s| u32::try_from(s.saturating_add(1)).unwrap_or(u32::MAX))
                .collect(),
        }
    }

    /// Sets operation `i`'s clock from its dependencies' (already set).
    pub fn set(&mut self, i: usize, deps: &[usize]) {
        let w = self.width;
        for &d in deps {
            for a in 0..w {
                let v = self.clocks[d * w + a];
                let slot = &mut self.clocks[i * w + a];
                *slot = (*slot).max(v);
            }
        }
        let own = &mut self.clocks[i * w + self.author[i] as usize];
        *own = (*own).max(self.position[i]);
    }

    /// Whether `ancestor` is in the causal past of `op`.
    pub fn contains(&self, op: usize, ancestor: usize) -> bool {
        op != ancestor
            && self.clocks[op * self.width + self.author[ancestor] as usize]
                >= self.position[ancestor]
    }

    pub fn concurrent(&self, a: usize, b: usize) -> bool {
        a != b && !self.contains(a, b) && !self.contains(b, a)
    }

    /// Bytes the clocks take.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.clocks.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_follow_dependencies_and_own_chains() {
        let a = DeviceId([1; 32]);
        let b = DeviceId([2; 32]);
        // 0: a@0; 1: b@0 after 0; 2: a@1 (no deps); 3: b@1 after 1.
        let mut anc = Ancestry::new(&[a, b, a, b], &[0, 0, 1, 1]);
        anc.set(0, &[]);
        anc.set(1, &[0]);
        anc.set(2, &[]);
        anc.set(3, &[1]);
        assert!(anc.contains(1, 0));
        assert!(anc.contains(3, 0), "transitively");
        assert!(anc.contains(2, 0), "an author knows what it wrote before");
        assert!(!anc.contains(0, 2));
        assert!(anc.concurrent(2, 3));
        assert!(!anc.contains(0, 0));
        assert_eq!(anc.bytes(), 4 * 2 * 4);
    }
}
