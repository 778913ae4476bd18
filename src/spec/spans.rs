//! Finds where a key path sits in the spec's text, so semantic errors (found after deserializing)
//! can still point at file:line:col.

use std::ops::Range;
use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

pub struct SpanIndex {
    doc: Option<ImDocument<String>>,
}

impl SpanIndex {
    pub fn new(text: &str) -> Self {
        SpanIndex { doc: ImDocument::parse(text.to_string()).ok() }
    }

    /// The span of the value at `path`, or of the nearest enclosing item that exists.
    pub fn span(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        self.lookup(path).0
    }

    /// The span of the value at `path` only if the spec spells it out (not a default).
    pub fn exact(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        match self.lookup(path) {
            (s, true) => s,
            _ => None,
        }
    }

    /// The best span for `path` and whether the whole path exists in the text.
    fn lookup(&self, path: &[Seg<'_>]) -> (Option<Range<usize>>, bool) {
        let Some(doc) = self.doc.as_ref() else { return (None, false) };
        let mut best: Option<Range<usize>> = None;
        let mut cur = Cursor::Table(doc.as_table());
        for seg in path {
            if let Cursor::Value(Value::InlineTable(t)) = cur {
                cur = Cursor::InlineTable(t);
            }
            let next = match (cur, seg) {
                (Cursor::Table(t), Seg::Key(k)) => {
                    if let Some(key) = t.key(k) {
                        if let Some(s) = key.span() {
                            best = Some(s);
                        }
                    }
                    match t.get(k) {
                        Some(item) => Cursor::from_item(item),
                        None => return (best.or_else(|| t.span()), false),
                    }
                }
                (Cursor::InlineTable(t), Seg::Key(k)) => {
                    if let Some((key, _)) = t.get_key_value(k) {
                        if let Some(s) = key.span() {
                            best = Some(s);
                        }
                    }
                    match t.get(k) {
                        Some(v) => Cursor::Value(v),
                        None => return (best.or_else(|| t.span()), false),
                    }
                }
                (Cursor::ArrayOfTables(a), Seg::Index(i)) => match a.get(*i) {
                    Some(t) => Cursor::Table(t),
                    None => return (best, false),
                },
                (Cursor::Value(Value::Array(a)), Seg::Index(i)) => match a.get(*i) {
                    Some(v) => Cursor::Value(v),
                    None => return (best.or_else(|| a.span()), false),
                },
                _ => return (best, false),
            };
            if let Some(s) = next.span() {
                best = Some(s);
            }
            cur = next;
        }
        (best, true)
    }
}

#[derive(Clone, Copy)]
enum Cursor<'a> {
    Table(&'a Table),
    InlineTable(&'a toml_edit::InlineTable),
    ArrayOfTables(&'a toml_edit::ArrayOfTables),
    Value(&'a Value),
    None,
}

impl<'a> Cursor<'a> {
    fn from_item(item: &'a Item) -> Self {
        match item {
            Item::Table(t) => Cursor::Table(t),
            Item::ArrayOfTables(a) => Cursor::ArrayOfTables(a),
            Item::Value(Value::InlineTable(t)) => Cursor::InlineTable(t),
            Item::Value(v) => Cursor::Value(v),
            Item::None => Cursor::None,
        }
    }
    fn span(&self) -> Option<Range<usize>> {
        match self {
            Cursor::Table(t) => t.span(),
            Cursor::InlineTable(t) => t.span(),
            Cursor::ArrayOfTables(a) => a.span(),
            Cursor::Value(v) => v.span(),
            Cursor::None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_in_arrays_of_tables() {
        let text =
            "[cluster]\nname = \"x\"\n\n[[nodes]]\nname = \"a\"\n\n[[nodes]]\nname = \"b\"\naddress = \"1.2.3.4\"\n";
        let idx = SpanIndex::new(text);
        let s = idx.span(&[Seg::Key("nodes"), Seg::Index(1), Seg::Key("address")]).unwrap();
        assert_eq!(&text[s], "\"1.2.3.4\"");
        let s = idx.span(&[Seg::Key("cluster"), Seg::Key("name")]).unwrap();
        assert_eq!(&text[s], "\"x\"");
        // missing key: falls back to the key/table that exists
        let s = idx.span(&[Seg::Key("nodes"), Seg::Index(0), Seg::Key("address")]);
        assert!(s.is_some());
        assert_eq!(idx.exact(&[Seg::Key("nodes"), Seg::Index(0), Seg::Key("address")]), None);
        assert!(idx.exact(&[Seg::Key("nodes"), Seg::Index(1), Seg::Key("address")]).is_some());
    }

    #[test]
    fn finds_values_in_inline_arrays() {
        let text = "[firewall]\nclient_cidrs = [\"10.0.0.0/8\", \"bad\"]\n";
        let idx = SpanIndex::new(text);
        let s = idx.span(&[Seg::Key("firewall"), Seg::Key("client_cidrs"), Seg::Index(1)]).unwrap();
        assert_eq!(&text[s], "\"bad\"");
    }
}
