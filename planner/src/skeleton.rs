//! The boolean skeleton of a predicate's text, parsed without recursing per term, and
//! balanced AND / OR trees.
//!
//! sqlparser builds `a = 1 OR a = 2 OR …` as a left-deep binary tree, one level per term,
//! and so does DataFusion's [`Expr`]: walks over it that DataFusion does not guard (Drop,
//! Clone, Display, a physical expression's evaluation) recurse once per term, and a
//! `--where` of a few thousand terms overflowed a worker thread's 2 MiB stack, which
//! aborts the process. Here the text is tokenized (a loop), its AND / OR / NOT structure
//! and grouping parentheses are parsed into n-ary [`Node`]s, and only the operands
//! between them (comparisons, IN lists, function calls) go to sqlparser, one at a time.
//! The expression built from the nodes is balanced ([`balanced`]): 10,000 OR terms are
//! 14 levels deep, not 10,000.
//!
//! What recursion is left is bounded before anything is built: nesting (parentheses,
//! brackets, `CASE … END`, `NOT`) to [`MAX_NESTING`] levels, AND / OR operands to
//! [`MAX_TERMS`], and the operators inside one operand to [`MAX_OPERATORS`].

use std::ops::Range;

use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{Error, Position, Result};

/// The most AND / OR operands a `--where` predicate may have. Long OR chains and IN
/// lists are legitimate (an IN list's values do not count: `c IN (1, 2, …)` is one).
pub const MAX_TERMS: usize = 100_000;

/// The deepest a predicate may nest parentheses, brackets, `CASE … END` and `NOT`.
pub const MAX_NESTING: usize = 64;

/// The most operators (`=`, `+`, `IS`, `LIKE`, a function call, …) one operand of
/// AND / OR may have: sqlparser and DataFusion build an operand's operator chains one
/// level per operator.
pub const MAX_OPERATORS: usize = 256;

/// How large a predicate may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most AND / OR operands.
    pub(crate) terms: usize,
    /// Deepest nesting.
    pub(crate) nesting: usize,
}

impl Limits {
    /// What a user may write.
    pub(crate) const USER: Limits = Limits {
        terms: MAX_TERMS,
        nesting: MAX_NESTING,
    };

    /// What a task may carry: the user's predicate ANDed with region and sample
    /// predicates the planner generated (balanced, a few levels deeper, and as many
    /// terms as a regions file has regions).
    pub(crate) const TASK: Limits = Limits {
        terms: 10 * MAX_TERMS,
        nesting: MAX_NESTING + 8,
    };
}

/// The boolean structure of a predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// All of them (two or more).
    And(Vec<Node>),
    /// Any of them (two or more).
    Or(Vec<Node>),
    /// Not it.
    Not(Box<Node>),
    /// An operand sqlparser parses: these tokens of [`Skeleton::tokens`].
    Leaf(Range<usize>),
}

/// A predicate's tokens (without whitespace) and their boolean structure.
#[derive(Debug)]
pub(crate) struct Skeleton {
    pub(crate) tokens: Vec<TokenWithSpan>,
    pub(crate) root: Node,
}

impl Skeleton {
    /// The tokens of a leaf, ended by an EOF token placed where the next token is, so
    /// that sqlparser's "found: EOF" errors point at the connective or parenthesis that
    /// ends the operand.
    pub(crate) fn leaf_tokens(&self, range: &Range<usize>) -> Vec<TokenWithSpan> {
        let mut tokens = self.tokens[range.clone()].to_vec();
        let span = self
            .tokens
            .get(range.end)
            .map(|t| t.span)
            .unwrap_or_else(datafusion::sql::sqlparser::tokenizer::Span::empty);
        tokens.push(TokenWithSpan::new(Token::EOF, span));
        tokens
    }

    /// The token after a leaf, as written (`AND`, `)`), or `None` at the end.
    pub(crate) fn after(&self, range: &Range<usize>) -> Option<String> {
        self.tokens.get(range.end).map(|t| t.token.to_string())
    }
}

const NONE: usize = usize::MAX;

fn keyword(t: &Token) -> Keyword {
    match t {
        Token::Word(w) if w.quote_style.is_none() => w.keyword,
        _ => Keyword::NoKeyword,
    }
}

fn position(t: &TokenWithSpan) -> Position {
    if t.span.start.line == 0 {
        Position::Unknown
    } else {
        Position::Text {
            line: t.span.start.line,
            column: t.span.start.column,
        }
    }
}

fn syntax(message: String, position: Position, sql: &str) -> Error {
    Error::Syntax {
        message: format!("{message} (in {:?})", shorten(sql)),
        position,
    }
}

/// `sql` for an error message: its first 200 characters, a long predicate would make
/// the message many lines long.
pub(crate) fn shorten(sql: &str) -> String {
    const KEEP: usize = 200;
    match sql.char_indices().nth(KEEP) {
        None => sql.to_string(),
        Some((cut, _)) => format!("{}… ({} characters)", &sql[..cut], sql.chars().count()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bracket {
    Paren,
    Square,
    Brace,
    Case,
}

fn opener(t: &Token) -> Option<Bracket> {
    match t {
        Token::LParen => Some(Bracket::Paren),
        Token::LBracket => Some(Bracket::Square),
        Token::LBrace => Some(Bracket::Brace),
        _ if keyword(t) == Keyword::CASE => Some(Bracket::Case),
        _ => None,
    }
}

fn closer(t: &Token) -> Option<Bracket> {
    match t {
        Token::RParen => Some(Bracket::Paren),
        Token::RBracket => Some(Bracket::Square),
        Token::RBrace => Some(Bracket::Brace),
        _ if keyword(t) == Keyword::END => Some(Bracket::Case),
        _ => None,
    }
}

/// Whether a token ends an operand, so that a `-` or `(` after it is an infix minus or
/// a call rather than a sign or a group.
fn ends_operand(t: &Token) -> bool {
    match t {
        Token::Word(_) => !is_operator_keyword(keyword(t)),
        Token::RParen | Token::RBracket | Token::RBrace | Token::Number(..) => true,
        Token::Placeholder(_) => true,
        t => is_literal(t),
    }
}

fn is_literal(t: &Token) -> bool {
    matches!(
        t,
        Token::Char(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

fn is_operator_keyword(k: Keyword) -> bool {
    matches!(
        k,
        Keyword::AND
            | Keyword::OR
            | Keyword::XOR
            | Keyword::NOT
            | Keyword::IS
            | Keyword::LIKE
            | Keyword::ILIKE
            | Keyword::IN
            | Keyword::BETWEEN
            | Keyword::SIMILAR
            | Keyword::REGEXP
            | Keyword::RLIKE
            | Keyword::DIV
            | Keyword::AT
            | Keyword::COLLATE
            | Keyword::OVERLAPS
            | Keyword::MEMBER
            | Keyword::ESCAPE
    )
}

/// Whether `t` (after `prev`) adds a level to the expression sqlparser builds: an
/// infix or postfix operator, a call or a subscript. Literals, names, commas and signs
/// do not; neither do brackets that open a group or a list (their nesting is bounded
/// on its own).
fn is_operator(prev: Option<&Token>, t: &Token) -> bool {
    match t {
        Token::Word(_) => is_operator_keyword(keyword(t)),
        Token::Number(..)
        | Token::Comma
        | Token::RParen
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace
        | Token::Placeholder(_)
        | Token::EOF
        | Token::Whitespace(_) => false,
        Token::LParen | Token::LBracket | Token::Plus | Token::Minus => {
            prev.is_some_and(ends_operand)
        }
        t => !is_literal(t),
    }
}

/// Tokenize `sql` and parse its boolean structure within `limits`.
pub(crate) fn parse(sql: &str, limits: Limits) -> Result<Skeleton> {
    let dialect = GenericDialect {};
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| {
            let message = e.to_string();
            let position = Position::Text {
                line: e.location.line,
                column: e.location.column,
            };
            syntax(message, position, sql)
        })?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();

    // One pass: match brackets, bound their nesting and the number of operands.
    let mut close = vec![NONE; tokens.len()];
    let mut closes = vec![false; tokens.len()];
    let mut open: Vec<(usize, Bracket)> = Vec::new();
    let mut terms = 1usize;
    for (i, t) in tokens.iter().enumerate() {
        if let Some(kind) = opener(&t.token) {
            open.push((i, kind));
            if open.len() > limits.nesting {
                return Err(too_deep(limits, position(t)));
            }
            continue;
        }
        if let Some(kind) = closer(&t.token) {
            match open.last() {
                Some(&(j, top)) if top == kind => {
                    open.pop();
                    close[j] = i;
                    closes[i] = true;
                }
                // `END` outside a CASE is a word sqlparser judges.
                _ if kind == Bracket::Case => {}
                _ => {
                    return Err(syntax(format!("unmatched `{}`", t.token), position(t), sql));
                }
            }
            continue;
        }
        if matches!(keyword(&t.token), Keyword::AND | Keyword::OR) {
            terms += 1;
            if terms > limits.terms {
                return Err(Error::PredicateTooLarge {
                    reason: format!(
                        "more than {} terms (AND / OR operands); a list of values is one \
                         term as `column IN (v1, v2, …)`",
                        limits.terms
                    ),
                });
            }
        }
    }
    if let Some(&(j, _)) = open.last() {
        return Err(syntax(
            format!("`{}` is not closed", tokens[j].token),
            position(&tokens[j]),
            sql,
        ));
    }

    let mut parser = SkeletonParser {
        sql,
        tokens: &tokens,
        close: &close,
        closes: &closes,
        pos: 0,
        limits,
    };
    let root = parser.or(tokens.len(), 1)?;
    Ok(Skeleton { tokens, root })
}

fn too_deep(limits: Limits, position: Position) -> Error {
    Error::PredicateTooLarge {
        reason: format!(
            "nested deeper than {} levels (parentheses, brackets, CASE and NOT) at {position}",
            limits.nesting
        ),
    }
}

struct SkeletonParser<'a> {
    sql: &'a str,
    tokens: &'a [TokenWithSpan],
    /// For an opening bracket, the index of its closing one.
    close: &'a [usize],
    /// Whether a token closes a bracket.
    closes: &'a [bool],
    pos: usize,
    limits: Limits,
}

impl SkeletonParser<'_> {
    fn at(&self, end: usize, k: Keyword) -> bool {
        self.pos < end && keyword(&self.tokens[self.pos].token) == k
    }

    /// `and (OR and)*` up to `end`.
    fn or(&mut self, end: usize, depth: usize) -> Result<Node> {
        let mut items = Vec::new();
        loop {
            match self.and(end, depth)? {
                Node::Or(inner) => items.extend(inner),
                node => items.push(node),
            }
            if !self.at(end, Keyword::OR) {
                break;
            }
            self.pos += 1;
        }
        Ok(one_or(items, Node::Or))
    }

    /// `unary (AND unary)*` up to `end`.
    fn and(&mut self, end: usize, depth: usize) -> Result<Node> {
        let mut items = Vec::new();
        loop {
            match self.unary(end, depth)? {
                Node::And(inner) => items.extend(inner),
                node => items.push(node),
            }
            if !self.at(end, Keyword::AND) {
                break;
            }
            self.pos += 1;
        }
        Ok(one_or(items, Node::And))
    }

    /// `NOT unary`, a parenthesized group that is a whole operand, or a leaf.
    fn unary(&mut self, end: usize, depth: usize) -> Result<Node> {
        if depth > self.limits.nesting {
            let at = self
                .tokens
                .get(self.pos)
                .map(position)
                .unwrap_or(Position::Unknown);
            return Err(too_deep(self.limits, at));
        }
        if self.at(end, Keyword::NOT) {
            self.pos += 1;
            return Ok(Node::Not(Box::new(self.unary(end, depth + 1)?)));
        }
        if self.pos < end && self.tokens[self.pos].token == Token::LParen {
            let close = self.close[self.pos];
            let after = close + 1;
            let whole_operand = after == end
                || matches!(
                    keyword(&self.tokens[after].token),
                    Keyword::AND | Keyword::OR
                );
            if whole_operand {
                self.pos += 1;
                let node = self.or(close, depth + 1)?;
                self.pos = after;
                return Ok(node);
            }
        }
        self.leaf(end)
    }

    /// Tokens up to the next AND / OR at this level (an AND after BETWEEN belongs to it).
    fn leaf(&mut self, end: usize) -> Result<Node> {
        let start = self.pos;
        let mut level = 0usize;
        let mut between = 0usize;
        let mut operators = 0usize;
        let mut prev: Option<&Token> = None;
        while self.pos < end {
            let t = &self.tokens[self.pos].token;
            if level == 0 {
                match keyword(t) {
                    Keyword::OR => break,
                    Keyword::AND if between == 0 => break,
                    Keyword::AND => between -= 1,
                    Keyword::BETWEEN => between += 1,
                    _ => {}
                }
            }
            if self.close[self.pos] != NONE {
                level += 1;
            } else if self.closes[self.pos] {
                level = level.saturating_sub(1);
            }
            if is_operator(prev, t) {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Err(Error::PredicateTooLarge {
                        reason: format!(
                            "more than {MAX_OPERATORS} operators in one operand of AND / OR, \
                             at {}",
                            position(&self.tokens[start])
                        ),
                    });
                }
            }
            prev = Some(t);
            self.pos += 1;
        }
        if self.pos == start {
            let (found, at) = match self.tokens.get(self.pos) {
                Some(t) => (t.token.to_string(), position(t)),
                None => ("end of input".to_string(), Position::Unknown),
            };
            return Err(syntax(
                format!("Expected: an expression, found: {found}"),
                at,
                self.sql,
            ));
        }
        Ok(Node::Leaf(start..self.pos))
    }
}

fn one_or(mut items: Vec<Node>, many: fn(Vec<Node>) -> Node) -> Node {
    if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        many(items)
    }
}

/// `items` joined by `op` (AND or OR) as a balanced tree: `ceil(log2(n))` levels deep.
/// `None` when there are none.
pub(crate) fn balanced(op: Operator, mut items: Vec<Expr>) -> Option<Expr> {
    // Pairwise rounds: each halves the list and keeps the order of the operands.
    while items.len() > 1 {
        let mut next = Vec::with_capacity(items.len().div_ceil(2));
        let mut it = items.into_iter();
        while let Some(left) = it.next() {
            next.push(match it.next() {
                Some(right) => {
                    Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right)))
                }
                None => left,
            });
        }
        items = next;
    }
    items.pop()
}

/// `expr` with every chain of ANDs and every chain of ORs (through NOTs) rebuilt as a
/// balanced tree, in a loop rather than by recursion, so that a left-deep chain of any
/// length (DataFusion's `conjunction`, an `e.or(term)` fold) becomes shallow without
/// overflowing the stack on the way.
pub(crate) fn rebalance(expr: Expr) -> Expr {
    enum Step {
        Visit(Expr),
        Join(Operator, usize),
        Not,
    }
    let mut work = vec![Step::Visit(expr)];
    let mut done: Vec<Expr> = Vec::new();
    while let Some(step) = work.pop() {
        match step {
            Step::Visit(Expr::BinaryExpr(BinaryExpr { left, op, right }))
                if matches!(op, Operator::And | Operator::Or) =>
            {
                let operands = chain(op, *left, *right);
                work.push(Step::Join(op, operands.len()));
                work.extend(operands.into_iter().rev().map(Step::Visit));
            }
            Step::Visit(Expr::Not(inner)) => {
                work.push(Step::Not);
                work.push(Step::Visit(*inner));
            }
            Step::Visit(other) => done.push(other),
            Step::Join(op, n) => {
                let operands = done.split_off(done.len() - n);
                done.extend(balanced(op, operands));
            }
            Step::Not => {
                if let Some(inner) = done.pop() {
                    done.push(Expr::Not(Box::new(inner)));
                }
            }
        }
    }
    done.pop().expect("one expression in, one out")
}

/// The operands of the `op` chain `left op right`, left to right, in a loop.
fn chain(op: Operator, left: Expr, right: Expr) -> Vec<Expr> {
    let mut operands = Vec::new();
    let mut pending = vec![right, left];
    while let Some(e) = pending.pop() {
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: inner,
                right,
            }) if inner == op => {
                pending.push(*right);
                pending.push(*left);
            }
            other => operands.push(other),
        }
    }
    operands
}

/// The depth of `expr`'s tree, counted in a loop.
pub(crate) fn depth(expr: &Expr) -> usize {
    use datafusion::common::tree_node::TreeNode;
    let mut deepest = 0;
    let mut pending: Vec<(&Expr, usize)> = vec![(expr, 1)];
    while let Some((e, d)) = pending.pop() {
        deepest = deepest.max(d);
        // `apply_children` visits only the direct children; it does not recurse.
        let _ = e.apply_children(|child| {
            pending.push((child, d + 1));
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn shape(sql: &str) -> String {
        let s = parse(sql, Limits::USER).unwrap();
        fn show(n: &Node, tokens: &[TokenWithSpan]) -> String {
            let list = |name: &str, items: &[Node]| {
                let inner: Vec<String> = items.iter().map(|i| show(i, tokens)).collect();
                format!("{name}({})", inner.join(", "))
            };
            match n {
                Node::And(items) => list("and", items),
                Node::Or(items) => list("or", items),
                Node::Not(inner) => format!("not({})", show(inner, tokens)),
                Node::Leaf(r) => tokens[r.clone()]
                    .iter()
                    .map(|t| t.token.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            }
        }
        show(&s.root, &s.tokens)
    }

    #[test]
    fn connectives_groups_and_not() {
        assert_eq!(shape("a = 1"), "a = 1");
        assert_eq!(shape("a = 1 OR b = 2 OR c = 3"), "or(a = 1, b = 2, c = 3)");
        assert_eq!(
            shape("a = 1 AND b = 2 OR c = 3 AND NOT d = 4"),
            "or(and(a = 1, b = 2), and(c = 3, not(d = 4)))"
        );
        // Groups of the same connective merge; redundant parentheses vanish.
        assert_eq!(
            shape("((a = 1 OR b = 2)) OR (c = 3 OR (d = 4))"),
            "or(a = 1, b = 2, c = 3, d = 4)"
        );
        assert_eq!(
            shape("x = 1 AND (a = 1 OR b = 2)"),
            "and(x = 1, or(a = 1, b = 2))"
        );
        // Parentheses that are part of an operand stay in it.
        assert_eq!(
            shape("(a + 1) = 2 AND f(a OR b) AND (a OR b) IS TRUE"),
            "and(( a + 1 ) = 2, f ( a OR b ), ( a OR b ) IS TRUE)"
        );
        // BETWEEN's AND, CASE's ANDs.
        assert_eq!(
            shape("a BETWEEN 1 AND 2 AND b NOT BETWEEN 3 AND 4 OR c = 1"),
            "or(and(a BETWEEN 1 AND 2, b NOT BETWEEN 3 AND 4), c = 1)"
        );
        assert_eq!(
            shape("CASE WHEN a AND b THEN 1 END = 1 AND c"),
            "and(CASE WHEN a AND b THEN 1 END = 1, c)"
        );
        // Quoted words are names, not connectives.
        assert_eq!(shape("\"and\" = 1"), "\"and\" = 1");
    }

    #[test]
    fn malformed_text_is_a_syntax_error_with_a_position() {
        for (sql, line, column) in [
            ("a = 1 AND", 0, 0),
            ("a = 1 AND OR b = 2", 1, 11),
            ("(a = 1", 1, 1),
            ("a = 1)", 1, 6),
            ("()", 1, 2),
            ("a = 'x", 1, 5),
        ] {
            match parse(sql, Limits::USER) {
                Err(Error::Syntax { position, .. }) => {
                    let want = if line == 0 {
                        Position::Unknown
                    } else {
                        Position::Text { line, column }
                    };
                    assert_eq!(position, want, "{sql}");
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn limits_are_clear_errors() {
        let deep = format!("{}a = 1{}", "(".repeat(100_000), ")".repeat(100_000));
        let err = parse(&deep, Limits::USER).unwrap_err();
        assert!(
            err.to_string().contains("nested deeper than 64 levels"),
            "{err}"
        );
        let nots = format!("{}a = 1", "NOT ".repeat(100));
        assert!(
            parse(&nots, Limits::USER)
                .unwrap_err()
                .to_string()
                .contains("nested deeper than 64")
        );
        let many = vec!["a = 1"; MAX_TERMS + 1].join(" OR ");
        let err = parse(&many, Limits::USER).unwrap_err();
        assert!(err.to_string().contains("more than 100000 terms"), "{err}");
        let chain = format!("a = 1{}", " + 1".repeat(MAX_OPERATORS));
        let err = parse(&chain, Limits::USER).unwrap_err();
        assert!(
            err.to_string().contains("operators in one operand"),
            "{err}"
        );
        // Signs and list values are not operators.
        let list: Vec<String> = (0..10_000).map(|i| format!("-{i}")).collect();
        parse(&format!("a IN ({})", list.join(", ")), Limits::USER).unwrap();
    }

    #[test]
    fn balanced_and_rebalanced_trees_are_shallow_and_keep_the_order() {
        let terms: Vec<Expr> = (0..10_000).map(|i| col("a").eq(lit(i))).collect();
        let tree = balanced(Operator::Or, terms.clone()).unwrap();
        assert_eq!(depth(&tree), 14 + 2);
        let deep = terms.into_iter().reduce(Expr::or).unwrap();
        assert_eq!(depth(&deep), 10_000 + 1);
        let fixed = rebalance(Expr::Not(Box::new(deep)));
        assert_eq!(depth(&fixed), 1 + 14 + 2);
        let Expr::Not(inner) = &fixed else {
            panic!("{fixed}")
        };
        let mut order = Vec::new();
        let _ = datafusion::common::tree_node::TreeNode::apply(inner.as_ref(), |e| {
            if let Expr::Literal(v, _) = e {
                order.push(v.to_string());
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        let want: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        assert_eq!(order, want);
    }
}
