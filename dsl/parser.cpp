// The grammar (EBNF; each parse function repeats its rule above it):
//
//   module       ::= declaration* EOF
//   declaration  ::= tensor_decl | pattern_decl | model_decl
//   tensor_decl  ::= 'tensor' IDENT ':' IDENT '[' IDENT (',' IDENT)* ']' ';'
//   pattern_decl ::= 'pattern' IDENT [ '(' [ param (',' param)* ] ')' ] ( body | '=' pattern_expr ';' )
//   param        ::= IDENT ':' IDENT constraint* [ '=' expr ]
//   constraint   ::= ( '>=' | '>' | '<=' | '<' ) additive
//   body         ::= '{' statement* '}'
//   statement    ::= 'let' IDENT '=' expr ';' | 'require' expr [ ':' STRING ] ';'
//                  | 'mask' ':' expr ';' | 'score' ':' expr ';'
//   expr         ::= binary expression over unary, precedence low to high:
//                    '||'  <  '&&'  <  '==' '!='  <  '<' '<=' '>' '>='  <  '+' '-'  <  '*' '/' '%'
//   unary        ::= ( '-' | '!' ) unary | postfix
//   postfix      ::= IDENT '(' [ expr (',' expr)* ] ')' | IDENT '[' expr (',' expr)* ']' | primary
//   primary      ::= INT | FLOAT | 'true' | 'false' | IDENT | '(' expr ')'
//
//   Pattern expressions: '&' binds tighter than '|' and '-', which share one level and associate to the left,
//   like '*' over '+' and '-'. So `a | b & c - d` is `(a | (b & c)) - d`.
//   pattern_expr    ::= pattern_term ( ( '|' | '-' ) pattern_term )*
//   pattern_term    ::= pattern_operand ( '&' pattern_operand )*
//   pattern_operand ::= IDENT [ '(' [ argument (',' argument)* ] ')' ] | '(' pattern_expr ')'
//   argument        ::= [ IDENT '=' ] expr
//
//   Models (layer graphs). `model`, `input`, `stack`, `return` and `output` are contextual words: `model` starts a
//   declaration only when followed by a name and '(' or '{', and `NAME = ...` is always a binding.
//   model_decl      ::= 'model' IDENT [ '(' [ param (',' param)* ] ')' ] '{' model_stmt* '}'
//   model_stmt      ::= 'input' IDENT ';' | IDENT '=' model_value ';' | 'output' model_value ';'
//                     | 'stack' IDENT '[' expr ']' '(' IDENT '=' model_value ')' '{' stack_stmt* '}'
//   stack_stmt      ::= IDENT '=' model_value ';' | 'return' model_value ';'      (the `return` last)
//   model_value     ::= model_product ( '+' model_product )*
//   model_product   ::= model_operand ( '*' model_operand )*
//   model_operand   ::= [ '-' ] ( INT | FLOAT ) | IDENT '(' [ model_arg (',' model_arg)* ] ')' | IDENT
//                     | '(' model_value ')'
//   model_arg       ::= 'pattern' '=' ( pattern_expr | '[' pattern_expr (',' pattern_expr)* ']' )
//                     | IDENT '=' expr | model_value
//
// Error handling: a parse function reports one error and returns null/false; its callers give up on the
// construct without reporting more, and recovery resynchronises at a statement or declaration boundary.
#include "dsl/parser.h"

#include <fmt/format.h>

#include <optional>

#include "dsl/lexer.h"

namespace tessera::dsl {

namespace {

using namespace ast;

// Deep enough for any real spec, shallow enough that recursion cannot exhaust the stack on hostile input.
constexpr int kMaxNesting = 256;

class Parser {
 public:
  Parser(const std::shared_ptr<const SourceFile>& file, Diagnostics& diags)
      : file_(file), errors_before_(diags.error_count()), tokens_(lex(file, diags)), diags_(diags) {}

  // module ::= declaration* EOF
  std::unique_ptr<Module> module() {
    auto result = std::make_unique<Module>();
    result->file = file_;
    while (!at(TokenKind::EndOfFile)) {
      if (at(TokenKind::KwTensor)) {
        if (auto t = tensor_decl()) {
          result->declarations.emplace_back(std::move(*t));
        } else {
          skip_to_declaration();
        }
      } else if (at(TokenKind::KwPattern)) {
        bool had_error = false;
        Dimension name;
        if (auto p = pattern_decl(&had_error, &name)) {
          result->declarations.emplace_back(std::move(*p));
        } else {
          if (!name.name.empty()) result->invalid_patterns.push_back(name);
          if (!had_error) skip_to_declaration();
        }
      } else if (at_model_start()) {
        bool recovered = false;
        if (auto m = model_decl(&recovered)) {
          result->declarations.emplace_back(std::move(*m));
        } else if (!recovered) {
          skip_to_declaration();
        }
      } else {
        error_here(fmt::format("expected a declaration ('pattern' or 'tensor'), got {}", describe(peek())));
        advance();
        skip_to_declaration();
      }
    }
    return result;
  }

  // A whole file holding one pattern_expr.
  PatternExprPtr lone_pattern_expr() {
    if (diags_.error_count() > errors_before_) return nullptr;  // lexical errors
    auto e = pattern_expr();
    if (!e) return nullptr;
    if (!at(TokenKind::EndOfFile)) {
      error_here(fmt::format("expected '&', '|' or '-' between patterns, got {}", describe(peek())));
      return nullptr;
    }
    return e;
  }

 private:
  // ---- Token helpers ----

  const Token& peek(size_t ahead = 0) const {
    size_t i = pos_ + ahead;
    return i < tokens_.size() ? tokens_[i] : tokens_.back();
  }
  bool at(TokenKind kind) const { return peek().kind == kind; }
  bool at_word(const char* word) const { return at(TokenKind::Identifier) && peek().text == word; }
  const Token& advance() {
    const Token& t = peek();
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool accept(TokenKind kind) {
    if (!at(kind)) return false;
    advance();
    return true;
  }
  SourceRange previous_range() const { return pos_ > 0 ? tokens_[pos_ - 1].where : peek().where; }
  SourceRange from(const SourceRange& begin) const { return SourceRange::merge(begin, previous_range()); }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::EndOfFile: return "end of file";
      case TokenKind::Identifier: return fmt::format("identifier '{}'", t.text);
      case TokenKind::IntLiteral:
      case TokenKind::FloatLiteral: return fmt::format("'{}'", t.text);
      case TokenKind::StringLiteral: return "string literal";
      default: return token_kind_name(t.kind);
    }
  }

  void error_here(std::string message) { diags_.error(peek().where, std::move(message)); }

  // Consumes a token of `kind`, or reports "expected X <context>, got Y".
  bool expect(TokenKind kind, const char* context) {
    if (accept(kind)) return true;
    std::string message = fmt::format("expected {} {}, got {}", token_kind_name(kind), context, describe(peek()));
    if (kind == TokenKind::Semicolon && pos_ > 0) {
      // A missing ';' belongs right after the statement it ends (as clang reports it), not at the next token,
      // which is often on a later line.
      SourceRange after = previous_range();
      after.begin = after.end;
      diags_.error(after, std::move(message));
    } else {
      error_here(std::move(message));
    }
    return false;
  }

  std::optional<Token> expect_identifier(const char* context) {
    if (at(TokenKind::Identifier)) return advance();
    error_here(fmt::format("expected {}, got {}", context, describe(peek())));
    return std::nullopt;
  }

  bool at_declaration_start() const { return at(TokenKind::KwPattern) || at(TokenKind::KwTensor) || at_model_start(); }

  // `model NAME (` or `model NAME {`: `model` is not reserved, so anything else is an ordinary name.
  bool at_model_start() const {
    return at_word("model") && peek(1).kind == TokenKind::Identifier &&
           (peek(2).kind == TokenKind::LParen || peek(2).kind == TokenKind::LBrace);
  }

  // Recovery: drop tokens up to the next declaration keyword.
  void skip_to_declaration() {
    while (!at(TokenKind::EndOfFile) && !at_declaration_start()) advance();
  }

  // Recovery inside a body: drop tokens through the next ';', or up to a '}' or declaration keyword.
  void skip_statement() {
    while (!at(TokenKind::EndOfFile) && !at_declaration_start() && !at(TokenKind::RBrace)) {
      if (advance().kind == TokenKind::Semicolon) return;
    }
  }

  // ---- Declarations ----

  // tensor_decl ::= 'tensor' IDENT ':' IDENT '[' IDENT (',' IDENT)* ']' ';'
  std::optional<TensorDecl> tensor_decl() {
    TensorDecl t;
    SourceRange begin = advance().where;
    auto name = expect_identifier("a tensor name after 'tensor'");
    if (!name) return std::nullopt;
    t.name = name->text;
    t.name_where = name->where;
    if (!expect(TokenKind::Colon, "after the tensor name")) return std::nullopt;
    auto elem = expect_identifier("an element type (int32 or float32)");
    if (!elem) return std::nullopt;
    t.elem_type = elem->text;
    t.elem_type_where = elem->where;
    if (!expect(TokenKind::LBracket, "before the tensor's dimensions")) return std::nullopt;
    do {
      auto dim = expect_identifier("a dimension name (B, H, Hkv, N, M, D, Dv or a new name)");
      if (!dim) return std::nullopt;
      t.dims.push_back({dim->text, dim->where});
    } while (accept(TokenKind::Comma));
    if (!expect(TokenKind::RBracket, "after the tensor's dimensions")) return std::nullopt;
    if (!expect(TokenKind::Semicolon, "after the tensor declaration")) return std::nullopt;
    t.where = from(begin);
    return t;
  }

  // pattern_decl ::= 'pattern' IDENT [ '(' [ param (',' param)* ] ')' ] ( body | '=' pattern_expr ';' )
  // On failure, `*recovered` says whether recovery already happened (after errors inside the body).
  std::optional<PatternDecl> pattern_decl(bool* recovered, Dimension* name_out) {
    PatternDecl p;
    SourceRange begin = advance().where;
    auto name = expect_identifier("a pattern name after 'pattern'");
    if (!name) return std::nullopt;
    p.name = name->text;
    p.name_where = name->where;
    *name_out = {p.name, p.name_where};
    if (accept(TokenKind::LParen)) {
      p.has_param_list = true;
      if (!at(TokenKind::RParen)) {
        do {
          auto param = parameter();
          if (!param) return std::nullopt;
          p.params.push_back(std::move(*param));
        } while (accept(TokenKind::Comma));
      }
      if (!expect(TokenKind::RParen, "after the parameters")) return std::nullopt;
    }
    if (accept(TokenKind::Assign)) {
      p.alias = pattern_expr();
      if (!p.alias) return std::nullopt;
      if (!expect(TokenKind::Semicolon, "after the pattern expression")) return std::nullopt;
    } else if (at(TokenKind::LBrace)) {
      if (!body(&p.body)) {
        *recovered = true;
        return std::nullopt;
      }
    } else {
      error_here(fmt::format("expected '{{' or '=' after the pattern's name and parameters, got {}", describe(peek())));
      return std::nullopt;
    }
    p.where = from(begin);
    return p;
  }

  // ---- Models ----

  // model_decl ::= 'model' IDENT [ '(' [ param (',' param)* ] ')' ] '{' model_stmt* '}'
  // On failure, `*recovered` says whether recovery already happened (after errors inside the body).
  std::optional<ModelDecl> model_decl(bool* recovered) {
    ModelDecl m;
    SourceRange begin = advance().where;
    const Token& name = advance();  // at_model_start() saw the name
    m.name = name.text;
    m.name_where = name.where;
    if (accept(TokenKind::LParen)) {
      m.has_param_list = true;
      if (!at(TokenKind::RParen)) {
        do {
          auto param = parameter();
          if (!param) return std::nullopt;
          m.params.push_back(std::move(*param));
        } while (accept(TokenKind::Comma));
      }
      if (!expect(TokenKind::RParen, "after the parameters")) return std::nullopt;
    }
    if (!at(TokenKind::LBrace)) {
      error_here(fmt::format("expected '{{' after the model's name and parameters, got {}", describe(peek())));
      return std::nullopt;
    }
    *recovered = true;  // model_block recovers from its own errors and consumes the closing '}'
    if (!model_block(&m.body, nullptr)) return std::nullopt;
    m.where = from(begin);
    return m;
  }

  // '{' statement* '}' of a model (stack == nullptr) or of a stack's body. Recovers from errors in statements;
  // returns false if there were any. The closing '}' is consumed unless the block is unterminated.
  bool model_block(std::vector<ModelStatement>* statements, const ModelStatement* stack) {
    advance();  // '{'
    bool ok = true;
    while (!at(TokenKind::RBrace)) {
      if (at(TokenKind::EndOfFile) || at_declaration_start()) {
        error_here(fmt::format("expected '}}' at the end of the {} body, got {}", stack ? "stack" : "model",
                               describe(peek())));
        return false;
      }
      bool recovered = false;
      if (auto s = model_statement(stack != nullptr, &recovered)) {
        statements->push_back(std::move(*s));
      } else {
        ok = false;
        if (!recovered) skip_model_statement();
      }
    }
    advance();  // '}'
    return ok;
  }

  // Recovery in a model: drop tokens through the next ';' or a balanced '{...}' (a stack), or up to a '}' or
  // declaration keyword.
  void skip_model_statement() {
    while (!at(TokenKind::EndOfFile) && !at_declaration_start() && !at(TokenKind::RBrace)) {
      if (at(TokenKind::LBrace)) {
        int depth = 0;
        do {
          if (at(TokenKind::LBrace)) ++depth;
          if (at(TokenKind::RBrace)) --depth;
          advance();
        } while (depth > 0 && !at(TokenKind::EndOfFile) && !at_declaration_start());
        return;
      }
      if (advance().kind == TokenKind::Semicolon) return;
    }
  }

  // model_stmt ::= 'input' IDENT ';' | IDENT '=' model_value ';' | 'output' model_value ';' | stack_decl
  // stack_stmt ::= IDENT '=' model_value ';' | 'return' model_value ';'
  std::optional<ModelStatement> model_statement(bool in_stack, bool* recovered) {
    ModelStatement s;
    SourceRange begin = peek().where;
    if (at(TokenKind::Identifier) && peek(1).kind == TokenKind::Assign) {
      s.kind = ModelStatementKind::Bind;
      const Token& name = advance();
      s.name = name.text;
      s.name_where = name.where;
      advance();  // '='
    } else if (at_word("stack")) {
      if (in_stack) {
        error_here("stacks do not nest: a stack's body holds `NAME = VALUE;` bindings and its `return`");
        return std::nullopt;
      }
      return stack(recovered);
    } else if (at_word("input")) {
      if (in_stack) {
        error_here("inputs are declared at the top level of a model, not inside a stack");
        return std::nullopt;
      }
      s.kind = ModelStatementKind::Input;
      advance();
      auto name = expect_identifier("an input name after 'input'");
      if (!name) return std::nullopt;
      s.name = name->text;
      s.name_where = name->where;
      if (!expect(TokenKind::Semicolon, "after the input's name")) return std::nullopt;
      s.where = from(begin);
      return s;
    } else if (at_word("output")) {
      if (in_stack) {
        error_here("a stack's body ends with `return VALUE;`; `output` belongs at the top level of the model");
        return std::nullopt;
      }
      s.kind = ModelStatementKind::Output;
      advance();
    } else if (at_word("return")) {
      if (!in_stack) {
        error_here("`return` ends a stack's body; a model ends with `output VALUE;`");
        return std::nullopt;
      }
      s.kind = ModelStatementKind::Return;
      advance();
    } else if (in_stack) {
      error_here(
          fmt::format("expected `NAME = VALUE;` or `return VALUE;` in a stack's body, got {}", describe(peek())));
      return std::nullopt;
    } else {
      error_here(
          fmt::format("expected `input NAME;`, `NAME = VALUE;`, `stack NAME[COUNT](NAME = VALUE) {{ ... }}` or "
                      "`output VALUE;` in a model, got {}",
                      describe(peek())));
      return std::nullopt;
    }
    s.value = model_value();
    if (!s.value) return std::nullopt;
    if (!expect(TokenKind::Semicolon, "at the end of the statement")) return std::nullopt;
    s.where = from(begin);
    return s;
  }

  // stack_decl ::= 'stack' IDENT '[' expr ']' '(' IDENT '=' model_value ')' '{' stack_stmt* '}'
  std::optional<ModelStatement> stack(bool* recovered) {
    ModelStatement s;
    s.kind = ModelStatementKind::Stack;
    SourceRange begin = advance().where;
    auto name = expect_identifier("a stack name after 'stack'");
    if (!name) return std::nullopt;
    s.name = name->text;
    s.name_where = name->where;
    if (!expect(TokenKind::LBracket, "before the stack's layer count, as in `stack layer[6](x = embed)`")) {
      return std::nullopt;
    }
    s.count = expression();
    if (!s.count) return std::nullopt;
    if (!expect(TokenKind::RBracket, "after the stack's layer count")) return std::nullopt;
    if (!expect(TokenKind::LParen, "before the value the stack carries, as in `(x = embed)`")) return std::nullopt;
    auto carried = expect_identifier("the name of the value the stack carries from layer to layer");
    if (!carried) return std::nullopt;
    s.carried = carried->text;
    s.carried_where = carried->where;
    if (!expect(TokenKind::Assign, "after the carried value's name")) return std::nullopt;
    s.value = model_value();
    if (!s.value) return std::nullopt;
    if (!expect(TokenKind::RParen, "after the carried value's initial value")) return std::nullopt;
    if (!at(TokenKind::LBrace)) {
      error_here(fmt::format("expected '{{' to open the stack's body, got {}", describe(peek())));
      return std::nullopt;
    }
    *recovered = true;
    bool ok = model_block(&s.body, &s);
    if (!ok) return std::nullopt;
    s.where = from(begin);
    for (size_t i = 0; i < s.body.size(); ++i) {
      if (s.body[i].kind == ModelStatementKind::Return && i + 1 < s.body.size()) {
        diags_.error(s.body[i + 1].where, fmt::format("statement after the `return` of stack '{}': `return` must "
                                                      "be the last statement of a stack's body",
                                                      s.name));
        return std::nullopt;
      }
    }
    if (s.body.empty() || s.body.back().kind != ModelStatementKind::Return) {
      diags_.error(previous_range(), fmt::format("stack '{}' must end with `return VALUE;` (the value the next "
                                                 "layer takes as '{}')",
                                                 s.name, s.carried));
      return std::nullopt;
    }
    return s;
  }

  static ModelValuePtr combine_values(ModelValueKind kind, ModelValuePtr lhs, ModelValuePtr rhs) {
    auto node = std::make_unique<ModelValue>();
    node->kind = kind;
    node->where = SourceRange::merge(lhs->where, rhs->where);
    node->operands.push_back(std::move(lhs));
    node->operands.push_back(std::move(rhs));
    return node;
  }

  // model_value ::= model_product ( '+' model_product )*
  ModelValuePtr model_value() {
    ModelValuePtr lhs = model_product();
    if (!lhs) return nullptr;
    while (accept(TokenKind::Plus)) {
      ModelValuePtr rhs = model_product();
      if (!rhs) return nullptr;
      lhs = combine_values(ModelValueKind::Add, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  // model_product ::= model_operand ( '*' model_operand )*
  ModelValuePtr model_product() {
    ModelValuePtr lhs = model_operand();
    if (!lhs) return nullptr;
    while (accept(TokenKind::Star)) {
      ModelValuePtr rhs = model_operand();
      if (!rhs) return nullptr;
      lhs = combine_values(ModelValueKind::Mul, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  // model_operand ::= [ '-' ] ( INT | FLOAT ) | IDENT '(' [ model_arg (',' model_arg)* ] ')' | IDENT
  //                 | '(' model_value ')'
  ModelValuePtr model_operand() {
    NestingGuard guard(depth_);
    if (!check_nesting(guard)) return nullptr;
    auto node = std::make_unique<ModelValue>();
    bool negative =
        at(TokenKind::Minus) && (peek(1).kind == TokenKind::IntLiteral || peek(1).kind == TokenKind::FloatLiteral);
    if (negative || at(TokenKind::IntLiteral) || at(TokenKind::FloatLiteral)) {
      SourceRange begin = peek().where;
      if (negative) advance();
      node->kind = ModelValueKind::Number;
      node->number = primary();
      if (negative) {
        auto neg = std::make_unique<Expr>();
        neg->kind = ExprKind::Unary;
        neg->unary_op = UnaryOp::Neg;
        neg->where = from(begin);
        neg->operands.push_back(std::move(node->number));
        node->number = std::move(neg);
      }
      node->where = from(begin);
      return node;
    }
    if (accept(TokenKind::LParen)) {
      ModelValuePtr inner = model_value();
      if (!inner) return nullptr;
      if (!expect(TokenKind::RParen, "to close the parenthesis")) return nullptr;
      return inner;
    }
    if (!at(TokenKind::Identifier)) {
      error_here(
          fmt::format("expected a value (a name, an operator call such as `linear(x, out=256)`, or a "
                      "number scaling a value), got {}",
                      describe(peek())));
      return nullptr;
    }
    const Token& name = advance();
    node->name = name.text;
    node->name_where = name.where;
    node->where = name.where;
    if (!accept(TokenKind::LParen)) return node;  // a name
    node->kind = ModelValueKind::Call;
    if (!accept(TokenKind::RParen)) {
      do {
        auto arg = model_argument();
        if (!arg) return nullptr;
        node->args.push_back(std::move(*arg));
      } while (accept(TokenKind::Comma));
      if (!expect(TokenKind::RParen, "after the operator's arguments")) return nullptr;
    }
    node->where = from(node->name_where);
    return node;
  }

  // model_arg ::= 'pattern' '=' ( pattern_expr | '[' pattern_expr (',' pattern_expr)* ']' ) | IDENT '=' expr
  //             | model_value
  std::optional<ModelArgument> model_argument() {
    ModelArgument a;
    SourceRange begin = peek().where;
    // `pattern` is a keyword (it starts declarations), so it is matched as one here.
    if ((at(TokenKind::Identifier) || at(TokenKind::KwPattern)) && peek(1).kind == TokenKind::Assign) {
      a.name = peek().text;
      a.name_where = advance().where;
      advance();  // '='
      if (a.name == "pattern") {
        a.kind = ModelArgumentKind::Pattern;
        if (accept(TokenKind::LBracket)) {
          a.kind = ModelArgumentKind::PatternList;
          do {
            auto p = pattern_expr();
            if (!p) return std::nullopt;
            a.patterns.push_back(std::move(p));
          } while (accept(TokenKind::Comma));
          if (!expect(TokenKind::RBracket, "after the list of patterns")) return std::nullopt;
        } else {
          auto p = pattern_expr();
          if (!p) return std::nullopt;
          a.patterns.push_back(std::move(p));
        }
      } else {
        a.kind = ModelArgumentKind::Named;
        a.expr = expression();
        if (!a.expr) return std::nullopt;
      }
    } else {
      a.kind = ModelArgumentKind::Positional;
      a.value = model_value();
      if (!a.value) return std::nullopt;
    }
    a.where = from(begin);
    return a;
  }

  // param ::= IDENT ':' IDENT constraint* [ '=' expr ]
  // constraint ::= ( '>=' | '>' | '<=' | '<' ) additive
  std::optional<Param> parameter() {
    Param p;
    auto name = expect_identifier("a parameter name");
    if (!name) return std::nullopt;
    p.name = name->text;
    p.name_where = name->where;
    if (!expect(TokenKind::Colon, "after the parameter name")) return std::nullopt;
    auto type = expect_identifier("a parameter type (int, float or bool)");
    if (!type) return std::nullopt;
    p.type = type->text;
    p.type_where = type->where;
    while (true) {
      std::optional<BinaryOp> op;
      if (at(TokenKind::GreaterEqual))
        op = BinaryOp::Ge;
      else if (at(TokenKind::Greater))
        op = BinaryOp::Gt;
      else if (at(TokenKind::LessEqual))
        op = BinaryOp::Le;
      else if (at(TokenKind::Less))
        op = BinaryOp::Lt;
      if (!op) break;
      SourceRange op_where = advance().where;
      // The bound is an additive expression, so `>= 1 <= 8` reads as two constraints, not `1 <= 8`.
      auto bound = binary(kAdditiveLevel);
      if (!bound) return std::nullopt;
      SourceRange where = SourceRange::merge(op_where, bound->where);
      p.constraints.push_back({*op, std::move(bound), where});
    }
    if (accept(TokenKind::Assign)) {
      p.default_value = expression();
      if (!p.default_value) return std::nullopt;
    }
    p.where = from(p.name_where);
    return p;
  }

  // body ::= '{' statement* '}'
  // Recovers from errors in statements; returns false if there were any.
  bool body(std::vector<Statement>* statements) {
    advance();  // '{'
    bool ok = true;
    while (!at(TokenKind::RBrace)) {
      if (at(TokenKind::EndOfFile) || at_declaration_start()) {
        error_here(fmt::format("expected '}}' at the end of the pattern body, got {}", describe(peek())));
        return false;
      }
      if (auto s = statement()) {
        statements->push_back(std::move(*s));
      } else {
        ok = false;
        skip_statement();
      }
    }
    advance();  // '}'
    return ok;
  }

  // The statement a field word (`mask`, `score`, `weight`, `normalize`, `scoring`) starts, if the next token is one.
  std::optional<StatementKind> field_statement() const {
    if (at_word("mask")) return StatementKind::Mask;
    if (at_word("score")) return StatementKind::Score;
    if (at_word("weight")) return StatementKind::Weight;
    if (at_word("normalize")) return StatementKind::Normalize;
    if (at_word("scoring")) return StatementKind::Scoring;
    return std::nullopt;
  }

  // statement ::= 'let' IDENT '=' expr ';' | 'require' expr [ ':' STRING ] ';'
  //             | ('mask' | 'score' | 'weight' | 'normalize' | 'scoring') ':' expr ';'
  std::optional<Statement> statement() {
    Statement s;
    SourceRange begin = peek().where;
    if (accept(TokenKind::KwLet)) {
      s.kind = StatementKind::Let;
      auto name = expect_identifier("a name after 'let'");
      if (!name) return std::nullopt;
      s.name = name->text;
      s.name_where = name->where;
      if (!expect(TokenKind::Assign, "after the let's name")) return std::nullopt;
    } else if (accept(TokenKind::KwRequire)) {
      s.kind = StatementKind::Require;
    } else if (auto field = field_statement()) {
      s.kind = *field;
      const std::string after = fmt::format("after '{}'", advance().text);
      if (!expect(TokenKind::Colon, after.c_str())) return std::nullopt;
    } else {
      error_here(
          fmt::format("expected 'let', 'require', 'mask:', 'score:', 'weight:', 'normalize:' or 'scoring:' in a "
                      "pattern body, got {}",
                      describe(peek())));
      return std::nullopt;
    }
    s.value = expression();
    if (!s.value) return std::nullopt;
    if (s.kind == StatementKind::Require && accept(TokenKind::Colon)) {
      if (!at(TokenKind::StringLiteral)) {
        error_here(fmt::format("expected a message string after 'require ... :', got {}", describe(peek())));
        return std::nullopt;
      }
      s.has_message = true;
      s.message = advance().string_value;
    }
    if (!expect(TokenKind::Semicolon, "at the end of the statement")) return std::nullopt;
    s.where = from(begin);
    return s;
  }

  // ---- Expressions ----

  static constexpr int kAdditiveLevel = 5;

  // The binary operator a token stands for at precedence `level` (1 = '||' ... 6 = '*' '/' '%').
  std::optional<BinaryOp> binary_op_at(int level) const {
    switch (peek().kind) {
      case TokenKind::PipePipe: return level == 1 ? std::optional(BinaryOp::Or) : std::nullopt;
      case TokenKind::AmpAmp: return level == 2 ? std::optional(BinaryOp::And) : std::nullopt;
      case TokenKind::EqualEqual: return level == 3 ? std::optional(BinaryOp::Eq) : std::nullopt;
      case TokenKind::NotEqual: return level == 3 ? std::optional(BinaryOp::Ne) : std::nullopt;
      case TokenKind::Less: return level == 4 ? std::optional(BinaryOp::Lt) : std::nullopt;
      case TokenKind::LessEqual: return level == 4 ? std::optional(BinaryOp::Le) : std::nullopt;
      case TokenKind::Greater: return level == 4 ? std::optional(BinaryOp::Gt) : std::nullopt;
      case TokenKind::GreaterEqual: return level == 4 ? std::optional(BinaryOp::Ge) : std::nullopt;
      case TokenKind::Plus: return level == 5 ? std::optional(BinaryOp::Add) : std::nullopt;
      case TokenKind::Minus: return level == 5 ? std::optional(BinaryOp::Sub) : std::nullopt;
      case TokenKind::Star: return level == 6 ? std::optional(BinaryOp::Mul) : std::nullopt;
      case TokenKind::Slash: return level == 6 ? std::optional(BinaryOp::Div) : std::nullopt;
      case TokenKind::Percent: return level == 6 ? std::optional(BinaryOp::Mod) : std::nullopt;
      default: return std::nullopt;
    }
  }

  // expr ::= binary expression starting at the lowest precedence level ('||').
  ExprPtr expression() { return binary(1); }

  // level_n ::= level_{n+1} ( OP_n level_{n+1} )*      (left-associative; level 7 is `unary`)
  ExprPtr binary(int level) {
    if (level > 6) return unary();
    ExprPtr lhs = binary(level + 1);
    if (!lhs) return nullptr;
    while (auto op = binary_op_at(level)) {
      advance();
      ExprPtr rhs = binary(level + 1);
      if (!rhs) return nullptr;
      auto node = std::make_unique<Expr>();
      node->kind = ExprKind::Binary;
      node->binary_op = *op;
      node->where = SourceRange::merge(lhs->where, rhs->where);
      node->operands.push_back(std::move(lhs));
      node->operands.push_back(std::move(rhs));
      lhs = std::move(node);
    }
    return lhs;
  }

  // Guards recursion depth for nested parentheses and chains of unary operators.
  class NestingGuard {
   public:
    explicit NestingGuard(int& depth) : depth_(depth) { ++depth_; }
    ~NestingGuard() { --depth_; }
    NestingGuard(const NestingGuard&) = delete;
    NestingGuard& operator=(const NestingGuard&) = delete;
    bool too_deep() const { return depth_ > kMaxNesting; }

   private:
    int& depth_;
  };

  bool check_nesting(const NestingGuard& guard) {
    if (!guard.too_deep()) return true;
    error_here(fmt::format("expression is nested too deeply (more than {} levels)", kMaxNesting));
    return false;
  }

  // unary ::= ( '-' | '!' ) unary | postfix
  ExprPtr unary() {
    if (!at(TokenKind::Minus) && !at(TokenKind::Bang)) return postfix();
    NestingGuard guard(depth_);
    if (!check_nesting(guard)) return nullptr;
    const Token& op = advance();
    SourceRange op_where = op.where;
    UnaryOp kind = op.kind == TokenKind::Minus ? UnaryOp::Neg : UnaryOp::Not;
    ExprPtr operand = unary();
    if (!operand) return nullptr;
    auto node = std::make_unique<Expr>();
    node->kind = ExprKind::Unary;
    node->unary_op = kind;
    node->where = SourceRange::merge(op_where, operand->where);
    node->operands.push_back(std::move(operand));
    return node;
  }

  // postfix ::= IDENT '(' [ expr (',' expr)* ] ')' | IDENT '[' expr (',' expr)* ']' | primary
  ExprPtr postfix() {
    bool call = at(TokenKind::Identifier) && peek(1).kind == TokenKind::LParen;
    bool index = at(TokenKind::Identifier) && peek(1).kind == TokenKind::LBracket;
    if (!call && !index) return primary();
    NestingGuard guard(depth_);
    if (!check_nesting(guard)) return nullptr;
    auto node = std::make_unique<Expr>();
    const Token& name = advance();
    node->kind = call ? ExprKind::Call : ExprKind::Index;
    node->name = name.text;
    node->name_where = name.where;
    advance();  // '(' or '['
    TokenKind close = call ? TokenKind::RParen : TokenKind::RBracket;
    if (!(call && at(close))) {
      do {
        ExprPtr arg = expression();
        if (!arg) return nullptr;
        node->operands.push_back(std::move(arg));
      } while (accept(TokenKind::Comma));
    }
    if (!expect(close, call ? "after the function's arguments" : "after the tensor's indices")) return nullptr;
    node->where = from(node->name_where);
    return node;
  }

  // primary ::= INT | FLOAT | 'true' | 'false' | IDENT | '(' expr ')'
  ExprPtr primary() {
    auto node = std::make_unique<Expr>();
    const Token& t = peek();
    node->where = t.where;
    switch (t.kind) {
      case TokenKind::IntLiteral:
        node->kind = ExprKind::IntLit;
        node->int_value = t.int_value;
        node->text = t.text;
        break;
      case TokenKind::FloatLiteral:
        node->kind = ExprKind::FloatLit;
        node->float_value = t.float_value;
        node->text = t.text;
        break;
      case TokenKind::KwTrue:
      case TokenKind::KwFalse:
        node->kind = ExprKind::BoolLit;
        node->bool_value = t.kind == TokenKind::KwTrue;
        break;
      case TokenKind::Identifier:
        node->kind = ExprKind::Name;
        node->name = t.text;
        node->name_where = t.where;
        break;
      case TokenKind::LParen: return parenthesized();
      default: error_here(fmt::format("expected an expression, got {}", describe(t))); return nullptr;
    }
    advance();
    return node;
  }

  // '(' expr ')'
  ExprPtr parenthesized() {
    NestingGuard guard(depth_);
    if (!check_nesting(guard)) return nullptr;
    advance();  // '('
    ExprPtr inner = expression();
    if (!inner) return nullptr;
    if (!expect(TokenKind::RParen, "to close the parenthesis")) return nullptr;
    return inner;
  }

  // ---- Pattern expressions ----

  // pattern_expr ::= pattern_term ( ( '|' | '-' ) pattern_term )*
  PatternExprPtr pattern_expr() {
    PatternExprPtr lhs = pattern_term();
    if (!lhs) return nullptr;
    while (at(TokenKind::Pipe) || at(TokenKind::Minus)) {
      auto kind = advance().kind == TokenKind::Pipe ? PatternExprKind::Union : PatternExprKind::Difference;
      PatternExprPtr rhs = pattern_term();
      if (!rhs) return nullptr;
      lhs = combine(kind, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  // pattern_term ::= pattern_operand ( '&' pattern_operand )*
  PatternExprPtr pattern_term() {
    PatternExprPtr lhs = pattern_operand();
    if (!lhs) return nullptr;
    while (accept(TokenKind::Amp)) {
      PatternExprPtr rhs = pattern_operand();
      if (!rhs) return nullptr;
      lhs = combine(PatternExprKind::Intersect, std::move(lhs), std::move(rhs));
    }
    return lhs;
  }

  static PatternExprPtr combine(PatternExprKind kind, PatternExprPtr lhs, PatternExprPtr rhs) {
    auto node = std::make_unique<PatternExpr>();
    node->kind = kind;
    node->where = SourceRange::merge(lhs->where, rhs->where);
    node->lhs = std::move(lhs);
    node->rhs = std::move(rhs);
    return node;
  }

  // pattern_operand ::= IDENT [ '(' [ argument (',' argument)* ] ')' ] | '(' pattern_expr ')'
  PatternExprPtr pattern_operand() {
    if (at(TokenKind::LParen)) {
      NestingGuard guard(depth_);
      if (!check_nesting(guard)) return nullptr;
      advance();
      PatternExprPtr inner = pattern_expr();
      if (!inner) return nullptr;
      if (!expect(TokenKind::RParen, "to close the parenthesis")) return nullptr;
      return inner;
    }
    if (!at(TokenKind::Identifier)) {
      error_here(fmt::format("expected a pattern name, got {}", describe(peek())));
      return nullptr;
    }
    auto node = std::make_unique<PatternExpr>();
    const Token& name = advance();
    node->kind = PatternExprKind::Ref;
    node->name = name.text;
    node->name_where = name.where;
    if (accept(TokenKind::LParen) && !accept(TokenKind::RParen)) {
      do {
        auto arg = argument();
        if (!arg) return nullptr;
        node->args.push_back(std::move(*arg));
      } while (accept(TokenKind::Comma));
      if (!expect(TokenKind::RParen, "after the pattern's arguments")) return nullptr;
    }
    node->where = from(node->name_where);
    return node;
  }

  // argument ::= [ IDENT '=' ] expr
  std::optional<Argument> argument() {
    Argument a;
    SourceRange begin = peek().where;
    if (at(TokenKind::Identifier) && peek(1).kind == TokenKind::Assign) {
      a.name = peek().text;
      a.name_where = advance().where;
      advance();  // '='
    }
    a.value = expression();
    if (!a.value) return std::nullopt;
    a.where = from(begin);
    return a;
  }

  std::shared_ptr<const SourceFile> file_;
  int errors_before_;
  std::vector<Token> tokens_;
  Diagnostics& diags_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

std::unique_ptr<ast::Module> parse_module(const std::shared_ptr<const SourceFile>& file, Diagnostics& diags) {
  return Parser(file, diags).module();
}

ast::PatternExprPtr parse_pattern_expression(const std::shared_ptr<const SourceFile>& file, Diagnostics& diags) {
  return Parser(file, diags).lone_pattern_expr();
}

}  // namespace tessera::dsl
