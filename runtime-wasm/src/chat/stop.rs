//! Stop strings: text is released only once it cannot be the start of a stop string, so a
//! stop string is never sent, not even in part of a streamed chunk.

pub struct StopScan {
    stops: Vec<String>,
    pending: String,
}

/// What a piece of generated text released.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Text safe to send (possibly empty); generation goes on.
    Go(String),
    /// Text before a stop string; generation ends here.
    Stop(String),
}

impl StopScan {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Scan {
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s)).min() {
            let before = self.pending[..at].to_string();
            self.pending.clear();
            return Scan::Stop(before);
        }
        // Hold back the longest tail that a stop string starts with.
        let held = self
            .stops
            .iter()
            .map(|s| longest_tail_prefix(&self.pending, s))
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - held;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        Scan::Go(out)
    }

    /// What is still held back, at the end of generation.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Bytes of the longest suffix of `text` that is a proper prefix of `stop`, at a char boundary.
fn longest_tail_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{Scan, StopScan};

    #[test]
    fn a_stop_string_split_across_pieces_is_never_sent() {
        let mut s = StopScan::new(vec!["<END>".into()]);
        assert_eq!(s.push("Hello <"), Scan::Go("Hello ".into()));
        assert_eq!(s.push("EN"), Scan::Go(String::new()));
        assert_eq!(s.push("D> more"), Scan::Stop(String::new()));
    }

    #[test]
    fn a_false_start_is_released() {
        let mut s = StopScan::new(vec!["<END>".into(), "\n\n".into()]);
        assert_eq!(s.push("a <E"), Scan::Go("a ".into()));
        assert_eq!(s.push("X"), Scan::Go("<EX".into()));
        assert_eq!(s.push("b\n"), Scan::Go("b".into()));
        assert_eq!(s.flush(), "\n");
    }

    #[test]
    fn the_earliest_stop_wins_and_text_before_it_is_kept() {
        let mut s = StopScan::new(vec!["world".into(), "lo".into()]);
        assert_eq!(s.push("hello world"), Scan::Stop("hel".into()));
        let mut none = StopScan::new(vec![]);
        assert_eq!(none.push("héllo"), Scan::Go("héllo".into()));
    }

    #[test]
    fn multibyte_text_is_cut_at_char_boundaries() {
        let mut s = StopScan::new(vec!["é!".into()]);
        assert_eq!(s.push("caf\u{e9}"), Scan::Go("caf".into()));
        assert_eq!(s.push("?"), Scan::Go("\u{e9}?".into()));
    }
}
