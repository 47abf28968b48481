//! The notification template language: text with `{{name}}` variables and
//! `{{#name}}…{{/name}}` / `{{^name}}…{{/name}}` sections.
//!
//! * `{{name}}` is replaced by the variable's value (HTML-escaped in HTML
//!   templates). Spaces inside the braces are allowed: `{{ name }}`.
//! * `{{#name}}…{{/name}}` keeps its content only when the variable is not
//!   empty; `{{^name}}…{{/name}}` only when it is empty. Sections nest up to
//!   [`MAX_DEPTH`] levels.
//! * A line holding nothing but one section tag (and blanks) disappears
//!   entirely, line break included, so sections can sit on lines of their
//!   own without leaving blank lines behind.
//! * A tag must open and close on the same line. `{{` without a matching
//!   `}}` on its line is an error; a lone `}}` is ordinary text (CSS uses
//!   it). There is no way to write a literal `{{`.
//!
//! Templates are checked when they are parsed: every variable must be one
//! the notification kind provides, so a typo fails at load time.

use std::collections::BTreeMap;

use super::TemplateProblem;

/// Deepest nesting of sections.
pub(crate) const MAX_DEPTH: usize = 8;

/// Longest tag content shown in an error message, in characters.
const MAX_TAG_SHOWN: usize = 64;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// Literal text.
    Text(String),
    /// A variable's value.
    Var(&'static str),
    /// Content shown when the variable is non-empty (or empty, `inverted`).
    Section {
        name: &'static str,
        inverted: bool,
        body: Vec<Node>,
    },
}

/// How values are written into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    /// As they are (plain text, the Subject).
    None,
    /// HTML-escaped (`&`, `<`, `>`, `"`, `'`).
    Html,
}

/// A parsed, checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    nodes: Vec<Node>,
}

/// A section being parsed: its tag and the nodes collected so far.
struct Frame {
    /// `(name, inverted, line)` of the opening tag; `None` for the top level.
    open: Option<(&'static str, bool, usize)>,
    nodes: Vec<Node>,
}

impl Template {
    /// Parses `source`, accepting only the variables in `known`.
    ///
    /// Carriage returns are ignored (line breaks are `\n`). On error, the
    /// 1-based line and the problem.
    pub(crate) fn parse(
        source: &str,
        known: &[&'static str],
    ) -> Result<Template, (usize, TemplateProblem)> {
        let source = source.replace('\r', "");
        let mut stack = vec![Frame {
            open: None,
            nodes: Vec::new(),
        }];
        let mut line_no = 0;
        for raw_line in source.split_inclusive('\n') {
            line_no += 1;
            let line = if is_standalone_section(raw_line) {
                raw_line.trim()
            } else {
                raw_line
            };
            let mut rest = line;
            while let Some(start) = rest.find("{{") {
                push_text(&mut stack, &rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else {
                    return Err((line_no, TemplateProblem::Unbalanced));
                };
                let inner = &after[..end];
                if inner.contains("{{") {
                    return Err((line_no, TemplateProblem::Unbalanced));
                }
                rest = &after[end + 2..];
                handle_tag(&mut stack, inner, known, line_no)?;
            }
            push_text(&mut stack, rest);
        }
        if let Some(Frame {
            open: Some((name, _, line)),
            ..
        }) = stack.last()
        {
            return Err((*line, TemplateProblem::UnclosedSection((*name).to_owned())));
        }
        let nodes = stack.pop().map(|f| f.nodes).unwrap_or_default();
        Ok(Template { nodes })
    }

    /// A template that renders `text` as it is (no variables).
    pub(crate) fn literal(text: &str) -> Template {
        Template {
            nodes: vec![Node::Text(text.replace('\r', ""))],
        }
    }

    /// Renders the template with `vars`, appending to `out`.
    ///
    /// # Errors
    ///
    /// The name of a variable the template uses that `vars` lacks.
    pub(crate) fn render(
        &self,
        vars: &BTreeMap<&'static str, String>,
        escape: Escape,
        out: &mut String,
    ) -> Result<(), &'static str> {
        render_nodes(&self.nodes, vars, escape, out)
    }
}

fn render_nodes(
    nodes: &[Node],
    vars: &BTreeMap<&'static str, String>,
    escape: Escape,
    out: &mut String,
) -> Result<(), &'static str> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Var(name) => {
                let value = vars.get(name).ok_or(*name)?;
                match escape {
                    Escape::None => out.push_str(value),
                    Escape::Html => push_html_escaped(out, value),
                }
            }
            Node::Section {
                name,
                inverted,
                body,
            } => {
                let value = vars.get(name).ok_or(*name)?;
                if value.is_empty() == *inverted {
                    render_nodes(body, vars, escape, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Appends `value` with the HTML special characters escaped.
pub(crate) fn push_html_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Whether `line` is one section tag (`{{#…}}`, `{{^…}}`, `{{/…}}`) and
/// blanks, nothing else.
fn is_standalone_section(line: &str) -> bool {
    let t = line.trim();
    let Some(inner) = t.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) else {
        return false;
    };
    !inner.contains("{{")
        && !inner.contains("}}")
        && matches!(inner.trim_start().chars().next(), Some('#' | '^' | '/'))
}

/// Appends literal text to the innermost frame.
fn push_text(stack: &mut [Frame], text: &str) {
    if text.is_empty() {
        return;
    }
    let Some(frame) = stack.last_mut() else {
        return;
    };
    if let Some(Node::Text(last)) = frame.nodes.last_mut() {
        last.push_str(text);
    } else {
        frame.nodes.push(Node::Text(text.to_owned()));
    }
}

/// Handles the content of one `{{…}}` tag.
fn handle_tag(
    stack: &mut Vec<Frame>,
    inner: &str,
    known: &[&'static str],
    line: usize,
) -> Result<(), (usize, TemplateProblem)> {
    let tag = inner.trim();
    let (sigil, name) = match tag.chars().next() {
        Some(c @ ('#' | '^' | '/')) => (Some(c), tag[1..].trim_start()),
        _ => (None, tag),
    };
    if !is_valid_name(name) {
        let shown: String = tag.chars().take(MAX_TAG_SHOWN).collect();
        return Err((line, TemplateProblem::InvalidTag(shown)));
    }
    let Some(&name) = known.iter().find(|k| **k == name) else {
        return Err((line, TemplateProblem::UnknownVariable(name.to_owned())));
    };
    match sigil {
        None => {
            if let Some(frame) = stack.last_mut() {
                frame.nodes.push(Node::Var(name));
            }
        }
        Some(open @ ('#' | '^')) => {
            if stack.len() > MAX_DEPTH {
                return Err((line, TemplateProblem::TooDeep));
            }
            stack.push(Frame {
                open: Some((name, open == '^', line)),
                nodes: Vec::new(),
            });
        }
        Some(_) => {
            let matches = matches!(
                stack.last(),
                Some(Frame { open: Some((open, _, _)), .. }) if *open == name
            );
            if !matches {
                return Err((line, TemplateProblem::UnexpectedClose(name.to_owned())));
            }
            if let Some(Frame {
                open: Some((name, inverted, _)),
                nodes,
            }) = stack.pop()
                && let Some(parent) = stack.last_mut()
            {
                parent.nodes.push(Node::Section {
                    name,
                    inverted,
                    body: nodes,
                });
            }
        }
    }
    Ok(())
}

/// `[a-z][a-z0-9_]*`, at most 64 characters.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["name", "link", "flag"];

    fn vars(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    fn render(source: &str, pairs: &[(&'static str, &str)], escape: Escape) -> String {
        let t = Template::parse(source, KNOWN).expect("parse");
        let mut out = String::new();
        t.render(&vars(pairs), escape, &mut out).expect("render");
        out
    }

    #[test]
    fn variables_are_substituted_and_escaped() {
        let src = "Hi {{name}}, {{ name }}!";
        assert_eq!(
            render(src, &[("name", "<b>&")], Escape::None),
            "Hi <b>&, <b>&!"
        );
        assert_eq!(
            render(src, &[("name", "<b>&\"'")], Escape::Html),
            "Hi &lt;b&gt;&amp;&quot;&#39;, &lt;b&gt;&amp;&quot;&#39;!"
        );
    }

    #[test]
    fn sections_follow_emptiness() {
        let src = "a{{#flag}}[{{name}}]{{/flag}}{{^flag}}(none){{/flag}}b";
        assert_eq!(
            render(src, &[("flag", "y"), ("name", "n")], Escape::None),
            "a[n]b"
        );
        assert_eq!(
            render(src, &[("flag", ""), ("name", "n")], Escape::None),
            "a(none)b"
        );
    }

    #[test]
    fn standalone_section_lines_vanish() {
        let src = "one\n  {{#flag}}  \ntwo\n{{/flag}}\nthree\n";
        assert_eq!(
            render(src, &[("flag", "y")], Escape::None),
            "one\ntwo\nthree\n"
        );
        assert_eq!(render(src, &[("flag", "")], Escape::None), "one\nthree\n");
        // Carriage returns are dropped.
        assert_eq!(
            render(
                "a\r\n{{#flag}}\r\nb\r\n{{/flag}}\r\n",
                &[("flag", "")],
                Escape::None
            ),
            "a\n"
        );
    }

    #[test]
    fn lone_closing_braces_are_text() {
        assert_eq!(render("p{a:b}} }}", &[], Escape::None), "p{a:b}} }}");
    }

    #[test]
    fn errors_carry_line_and_problem() {
        let err = |s: &str| Template::parse(s, KNOWN).expect_err("must fail");
        assert_eq!(
            err("ok\n{{nmae}}"),
            (2, TemplateProblem::UnknownVariable("nmae".into()))
        );
        assert_eq!(err("a\nb\nc {{name"), (3, TemplateProblem::Unbalanced));
        assert_eq!(err("{{name\n}}"), (1, TemplateProblem::Unbalanced));
        assert_eq!(err("{{ {{name}}"), (1, TemplateProblem::Unbalanced));
        assert_eq!(err("{{}}"), (1, TemplateProblem::InvalidTag(String::new())));
        assert_eq!(
            err("{{Name}}"),
            (1, TemplateProblem::InvalidTag("Name".into()))
        );
        assert_eq!(
            err("{{{name}}}"),
            (1, TemplateProblem::InvalidTag("{name".into()))
        );
        assert_eq!(
            err("x\n{{#flag}}\ny"),
            (2, TemplateProblem::UnclosedSection("flag".into()))
        );
        assert_eq!(
            err("{{/flag}}"),
            (1, TemplateProblem::UnexpectedClose("flag".into()))
        );
        assert_eq!(
            err("{{#flag}}{{#name}}{{/flag}}{{/name}}"),
            (1, TemplateProblem::UnexpectedClose("flag".into()))
        );
        let deep = "{{#flag}}".repeat(MAX_DEPTH + 1) + &"{{/flag}}".repeat(MAX_DEPTH + 1);
        assert_eq!(err(&deep), (1, TemplateProblem::TooDeep));
        let ok = "{{#flag}}".repeat(MAX_DEPTH) + &"{{/flag}}".repeat(MAX_DEPTH);
        assert!(Template::parse(&ok, KNOWN).is_ok());
    }

    #[test]
    fn missing_variable_at_render_is_reported() {
        let t = Template::parse("{{name}}", KNOWN).expect("parse");
        let mut out = String::new();
        assert_eq!(
            t.render(&BTreeMap::new(), Escape::None, &mut out),
            Err("name")
        );
    }
}
