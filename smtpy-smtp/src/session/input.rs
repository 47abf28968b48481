//! Input: framing command lines (with the line-length limit) and routing
//! message content to the DATA or BDAT reader, until the input runs out or
//! the session must wait for the driver.

use super::data::{self, DotState};
use super::{BdatChunk, ChunkFate, Pending, Phase, Session, replies};

/// How far one processing step got.
struct Step {
    used: usize,
    go_on: bool,
}

impl Step {
    fn go(used: usize) -> Self {
        Self { used, go_on: true }
    }
    fn wait(used: usize) -> Self {
        Self { used, go_on: false }
    }
}

impl Session {
    /// Processes the buffered input after an answer from the driver.
    pub(super) fn resume(&mut self) {
        if self.input.is_empty() {
            return;
        }
        let mut buffered = std::mem::take(&mut self.input);
        let used = self.run(&buffered);
        if self.closed {
            return;
        }
        buffered.drain(..used.min(buffered.len()));
        self.input = buffered;
    }

    /// Processes `input` until it is exhausted or the session must wait for
    /// the driver. Returns how many bytes were consumed (all of them when the
    /// rest is to be discarded).
    pub(super) fn run(&mut self, input: &[u8]) -> usize {
        let mut pos = 0;
        while !self.closed && self.pending.is_none() {
            let rest = input.get(pos..).unwrap_or_default();
            let step = match self.phase {
                Phase::Command => self.step_command(rest),
                Phase::Data(state) => self.step_data(state, rest),
                Phase::Bdat(chunk) => self.step_bdat(chunk, rest),
            };
            pos += step.used;
            if !step.go_on {
                break;
            }
        }
        if self.closed || matches!(self.pending, Some(Pending::Tls)) {
            input.len()
        } else {
            pos.min(input.len())
        }
    }

    /// Frames one command line (or skips an over-long one).
    fn step_command(&mut self, rest: &[u8]) -> Step {
        if rest.is_empty() {
            return Step::wait(0);
        }
        if self.discarding_line {
            return match rest.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    self.discarding_line = false;
                    Step::go(at + 1)
                }
                None => Step::wait(rest.len()),
            };
        }
        let window = rest.get(..self.max_line).unwrap_or(rest);
        match window.iter().position(|&b| b == b'\n') {
            Some(at) => {
                let (line, after) = rest.split_at(at + 1);
                self.handle_line(line, !after.is_empty());
                Step::go(at + 1)
            }
            None if window.len() >= self.max_line => {
                self.discarding_line = true;
                self.protocol_error(&replies::LINE_TOO_LONG);
                Step::go(window.len())
            }
            None => Step::wait(0),
        }
    }

    fn step_data(&mut self, mut state: DotState, rest: &[u8]) -> Step {
        let Some(body) = self.txn.as_mut().and_then(|txn| txn.body.as_mut()) else {
            self.phase = Phase::Command;
            return Step::go(0);
        };
        let (used, done) = data::read_dot(&mut state, rest, body);
        if done {
            self.phase = Phase::Command;
            self.finish_message();
            Step::go(used)
        } else {
            self.phase = Phase::Data(state);
            Step::wait(used)
        }
    }

    fn step_bdat(&mut self, mut chunk: BdatChunk, rest: &[u8]) -> Step {
        let take = chunk.remaining.min(rest.len());
        let (content, _) = rest.split_at(take);
        if chunk.fate == ChunkFate::Keep
            && let Some(txn) = self.txn.as_mut()
            && let (Some(body), Some(bdat)) = (txn.body.as_mut(), txn.bdat.as_mut())
        {
            bdat.normalizer.push(content, body);
        }
        chunk.remaining -= take;
        if chunk.remaining == 0 {
            self.phase = Phase::Command;
            self.finish_chunk(chunk);
            Step::go(take)
        } else {
            self.phase = Phase::Bdat(chunk);
            Step::wait(take)
        }
    }
}
