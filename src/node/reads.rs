//! Reads are side-effect free: listing threads and opening one write nothing to the
//! store, even when they rebuild a summary or load a document (the rebuilt summary is
//! stored at the end of the next command). So views are served without a flush.

#[cfg(test)]
mod tests {
    use crate::core::policy::{Category, Role};
    use crate::core::thread::Subject;
    use crate::node::Node;
    use crate::store::{Sealed, Store};

    #[test]
    fn listing_and_opening_threads_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pass = b"a passphrase long enough";
        let mut node = Node::create(dir.path(), pass).unwrap();
        node.init_clinic("Maple", "Sam K.", Role::Clinician)
            .unwrap();
        let a = node
            .new_thread(
                Subject::Topic("Front desk".into()),
                Category::Scheduling,
                "Monday",
            )
            .unwrap();
        let b = node
            .new_thread(
                Subject::Patient("J. D.".into()),
                Category::Clinical,
                "Intake",
            )
            .unwrap();
        node.post(a, "@Sam K. please confirm", false, None).unwrap();
        drop(node);
        let node = Node::open(dir.path(), pass).unwrap();
        let summary = |n: &Node, t| {
            n.store
                .get_sealed(Sealed::Summaries, &Store::thread_key(&t))
                .unwrap()
        };
        assert!(
            summary(&node, a).is_none(),
            "changed threads have no stored summary"
        );
        let envelopes = node.store.envelope_count();
        let (first, _) = node.threads().unwrap();
        let detail = node.thread(a).unwrap();
        let (again, _) = node.threads().unwrap();
        assert_eq!(first, again);
        assert_eq!(detail.messages.len(), 1);
        assert_eq!(first.iter().find(|s| s.thread == a).unwrap().messages, 1);
        // Rebuilt in memory only.
        assert!(summary(&node, a).is_none() && summary(&node, b).is_none());
        assert_eq!(node.store.envelope_count(), envelopes);
        // The next command stores what the reads rebuilt (thread b did not change).
        let mut node = node;
        node.post(a, "second", false, None).unwrap();
        assert!(summary(&node, b).is_some());
        assert!(summary(&node, a).is_none(), "thread a changed again");
    }

    #[test]
    fn a_mention_counts_only_the_whole_name() {
        use crate::node::docs::mentions;
        assert!(mentions("@Sam K. please call", "Sam K."));
        assert!(mentions("thanks @sam k.", "Sam K."));
        assert!(!mentions("@Samantha please call", "Sam"));
        assert!(!mentions("Sam K. please call", "Sam K."));
    }
}
