//! Where each field of a YAML stream stands, so errors can say FILE:LINE:COL.
//!
//! serde_yaml reports positions only for syntax errors; semantic errors come from the
//! validated types, which know field paths but not lines. This index maps every path
//! (`spec.scaling.maxContainers`, `spec.env[1].name`) of every document to the position
//! of its key (or, for sequence items, of the item), from yaml-rust2's marked events.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Positions of one document: path -> (line, column), both from 1.
#[derive(Debug, Default)]
pub struct DocPositions {
    fields: HashMap<String, (usize, usize)>,
    start: (usize, usize),
}

impl DocPositions {
    /// The position of `path`, else of its longest known parent, else of the document.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.fields.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.start,
            }
        }
    }
}

/// Positions of every document of a stream, in order.
#[derive(Debug, Default)]
pub struct Positions {
    docs: Vec<DocPositions>,
}

impl Positions {
    /// Indexes `text`; a syntax error comes back as (line, column, message).
    pub fn parse(text: &str) -> Result<Positions, (usize, usize, String)> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut builder, true).map_err(|e| {
            let m = e.marker();
            (m.line(), m.col() + 1, e.info().to_string())
        })?;
        Ok(Positions { docs: builder.docs })
    }

    /// The positions of document `index` (0-based), if it exists.
    pub fn document(&self, index: usize) -> Option<&DocPositions> {
        self.docs.get(index)
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    docs: Vec<DocPositions>,
    stack: Vec<Frame>,
}

impl Builder {
    fn current(&mut self) -> &mut DocPositions {
        if self.docs.is_empty() {
            self.docs.push(DocPositions::default());
        }
        self.docs.last_mut().expect("a document exists")
    }

    /// Called for each node that is a value (not a key); returns its path.
    fn value_path(&mut self, mark: Marker) -> Option<String> {
        let pos = (mark.line(), mark.col() + 1);
        let path = match self.stack.last_mut() {
            None => return Some(String::new()),
            Some(Frame::Map { path, key }) => {
                let k = key.take()?;
                if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }
            }
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.current().fields.insert(p.clone(), pos);
                p
            }
        };
        Some(path)
    }

    /// Handles a scalar that may be a key; returns true when it was one.
    fn take_key(&mut self, name: &str, mark: Marker) -> bool {
        let depth = self.stack.len();
        let Some(Frame::Map { path, key }) = self.stack.last_mut() else {
            return false;
        };
        if key.is_some() {
            return false;
        }
        let first_root_key = depth == 1 && self.docs.last().is_some_and(|d| d.fields.is_empty());
        *key = Some(name.to_string());
        let full = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        let pos = (mark.line(), mark.col() + 1);
        let doc = self.current();
        if first_root_key {
            // A document "starts" at its first key, not at `---` or the file's top.
            doc.start = pos;
        }
        doc.fields.insert(full, pos);
        true
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.docs.push(DocPositions {
                    start: (mark.line(), mark.col() + 1),
                    ..Default::default()
                });
                self.stack.clear();
            }
            Event::Scalar(value, ..) if !self.take_key(&value, mark) => {
                self.value_path(mark);
            }
            Event::Alias(_) => {
                self.value_path(mark);
            }
            Event::MappingStart(..) => {
                // A mapping used as a key is not something manifests do; index it as a value.
                let path = self.value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}
