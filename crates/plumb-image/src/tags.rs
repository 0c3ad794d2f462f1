//! The tag database of an ImageRepository: what a scan keeps of the registry's tag list.
//!
//! One sorted, deduplicated `Vec<String>` per repository: 100,000 tags of ~10 bytes take
//! about 3.5 MB, and policies read it as a slice without copying.

use regex::Regex;
use sha2::{Digest, Sha256};

use crate::Error;

/// How many tags `status.lastScanResult.latestTags` lists, as Flux.
pub const LATEST_TAGS: usize = 10;

/// The compiled `exclusionList`: a tag matching any pattern is dropped.
#[derive(Debug, Clone, Default)]
pub struct Exclusions(Vec<Regex>);

impl Exclusions {
    /// Compiles the patterns; the first invalid one is the error.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Error> {
        patterns
            .iter()
            .map(|p| {
                Regex::new(p.as_ref()).map_err(|e| Error::Regex {
                    pattern: p.as_ref().to_owned(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `tag` is excluded.
    pub fn excludes(&self, tag: &str) -> bool {
        self.0.iter().any(|r| r.is_match(tag))
    }
}

/// The scanned tags, sorted and deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagDb {
    tags: Vec<String>,
}

impl TagDb {
    /// The tags of a scan, without the excluded ones.
    pub fn new(tags: impl IntoIterator<Item = String>, exclusions: &Exclusions) -> Self {
        let mut tags: Vec<String> = tags
            .into_iter()
            .filter(|t| !exclusions.excludes(t))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        tags.shrink_to_fit();
        Self { tags }
    }

    /// The tags, sorted.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Heap bytes the database holds: the vector's slots plus every tag's buffer (the
    /// memory a benchmark reports per repository).
    pub fn heap_bytes(&self) -> usize {
        self.tags.capacity() * std::mem::size_of::<String>()
            + self.tags.iter().map(String::capacity).sum::<usize>()
    }

    /// Whether no tag is known.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Whether `tag` was scanned.
    pub fn contains(&self, tag: &str) -> bool {
        self.tags.binary_search_by(|t| t.as_str().cmp(tag)).is_ok()
    }

    /// `lastScanResult.latestTags`: the last ten in reverse alphabetical order (Flux sorts the
    /// tags in reverse and takes the first ten).
    pub fn latest_tags(&self) -> Vec<String> {
        self.tags.iter().rev().take(LATEST_TAGS).cloned().collect()
    }

    /// `lastScanResult.revision`: SHA-256 of the sorted tags, one per line, so that an
    /// unchanged tag list keeps its revision.
    pub fn revision(&self) -> String {
        let mut h = Sha256::new();
        for t in &self.tags {
            h.update(t.as_bytes());
            h.update(b"\n");
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(tags: &[&str], excl: &[&str]) -> TagDb {
        let e = Exclusions::new(excl).unwrap();
        TagDb::new(tags.iter().map(|s| s.to_string()), &e)
    }

    #[test]
    fn heap_bytes_counts_slots_and_buffers() {
        let d = db(&["1.0.0", "10.0.0", "1.0.0"], &[]);
        // Two slots (deduplicated, shrunk) plus 5 + 6 bytes of tag text at least.
        let slots = 2 * std::mem::size_of::<String>();
        assert!(d.heap_bytes() >= slots + 11, "{}", d.heap_bytes());
        assert!(d.heap_bytes() < slots + 64, "{}", d.heap_bytes());
        assert_eq!(TagDb::default().heap_bytes(), 0);
    }

    #[test]
    fn default_exclusion_drops_signatures() {
        let d = db(&["v1", "sha256-abc.sig", "v2", "v1"], &[r"^.*\.sig$"]);
        assert_eq!(d.tags(), ["v1", "v2"]);
        assert!(d.contains("v2") && !d.contains("sha256-abc.sig"));
    }

    #[test]
    fn latest_tags_are_the_last_ten_reversed() {
        let tags: Vec<String> = (0..15).map(|i| format!("t{i:02}")).collect();
        let d = TagDb::new(tags, &Exclusions::default());
        let latest = d.latest_tags();
        assert_eq!(latest.len(), 10);
        assert_eq!(latest[0], "t14");
        assert_eq!(latest[9], "t05");
    }

    #[test]
    fn revision_depends_on_the_set_only() {
        assert_eq!(
            db(&["a", "b"], &[]).revision(),
            db(&["b", "a", "a"], &[]).revision()
        );
        assert_ne!(db(&["a", "b"], &[]).revision(), db(&["a"], &[]).revision());
    }

    #[test]
    fn invalid_exclusion_is_an_error() {
        let err = Exclusions::new(&["(unclosed"]).unwrap_err();
        assert!(err.to_string().contains("(unclosed"), "{err}");
    }
}
