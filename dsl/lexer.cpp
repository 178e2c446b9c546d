#include "dsl/lexer.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <limits>
#include <optional>

namespace tessera::dsl {

const char* token_kind_name(TokenKind kind) {
  switch (kind) {
    case TokenKind::EndOfFile: return "end of file";
    case TokenKind::Identifier: return "identifier";
    case TokenKind::IntLiteral: return "integer literal";
    case TokenKind::FloatLiteral: return "float literal";
    case TokenKind::StringLiteral: return "string literal";
    case TokenKind::KwTensor: return "'tensor'";
    case TokenKind::KwPattern: return "'pattern'";
    case TokenKind::KwLet: return "'let'";
    case TokenKind::KwRequire: return "'require'";
    case TokenKind::KwTrue: return "'true'";
    case TokenKind::KwFalse: return "'false'";
    case TokenKind::LParen: return "'('";
    case TokenKind::RParen: return "')'";
    case TokenKind::LBracket: return "'['";
    case TokenKind::RBracket: return "']'";
    case TokenKind::LBrace: return "'{'";
    case TokenKind::RBrace: return "'}'";
    case TokenKind::Comma: return "','";
    case TokenKind::Semicolon: return "';'";
    case TokenKind::Colon: return "':'";
    case TokenKind::Assign: return "'='";
    case TokenKind::EqualEqual: return "'=='";
    case TokenKind::NotEqual: return "'!='";
    case TokenKind::Less: return "'<'";
    case TokenKind::LessEqual: return "'<='";
    case TokenKind::Greater: return "'>'";
    case TokenKind::GreaterEqual: return "'>='";
    case TokenKind::Plus: return "'+'";
    case TokenKind::Minus: return "'-'";
    case TokenKind::Star: return "'*'";
    case TokenKind::Slash: return "'/'";
    case TokenKind::Percent: return "'%'";
    case TokenKind::Bang: return "'!'";
    case TokenKind::AmpAmp: return "'&&'";
    case TokenKind::PipePipe: return "'||'";
    case TokenKind::Amp: return "'&'";
    case TokenKind::Pipe: return "'|'";
  }
  return "token";
}

namespace {

bool is_ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
 public:
  Lexer(const std::shared_ptr<const SourceFile>& file, Diagnostics& diags)
      : file_(file), text_(file->text()), diags_(diags) {}

  std::vector<Token> run() {
    std::vector<Token> tokens;
    while (true) {
      skip_trivia();
      if (pos_ >= text_.size()) break;
      if (auto token = next()) tokens.push_back(std::move(*token));
    }
    Token eof;
    eof.kind = TokenKind::EndOfFile;
    eof.where = range(static_cast<uint32_t>(text_.size()), static_cast<uint32_t>(text_.size()));
    tokens.push_back(std::move(eof));
    return tokens;
  }

 private:
  SourceRange range(uint32_t begin, uint32_t end) const { return {file_, begin, end}; }
  char peek(size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }

  // Whitespace and comments.
  void skip_trivia() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '/' && peek(1) == '/') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else if (c == '/' && peek(1) == '*') {
        size_t close = text_.find("*/", pos_ + 2);
        if (close == std::string::npos) {
          diags_.error(range(pos_, pos_ + 2), "unterminated comment");
          pos_ = text_.size();
        } else {
          pos_ = close + 2;
        }
      } else {
        return;
      }
    }
  }

  Token make(TokenKind kind, uint32_t begin) const {
    Token t;
    t.kind = kind;
    t.where = range(begin, static_cast<uint32_t>(pos_));
    t.text = text_.substr(begin, pos_ - begin);
    return t;
  }

  std::optional<Token> next() {
    auto begin = static_cast<uint32_t>(pos_);
    char c = text_[pos_];
    if (is_ident_start(c)) return identifier(begin);
    if (is_digit(c) || (c == '.' && is_digit(peek(1)))) return number(begin);
    if (c == '"') return string(begin);
    if (auto kind = punctuation()) return make(*kind, begin);
    // One error per run of unexpected characters, and a UTF-8 sequence counts as one character.
    ++pos_;
    while (pos_ < text_.size() && (static_cast<unsigned char>(text_[pos_]) & 0xC0) == 0x80) ++pos_;
    std::string shown = std::isprint(static_cast<unsigned char>(c))
                            ? fmt::format("'{}'", c)
                            : fmt::format("'\\x{:02x}'", static_cast<unsigned char>(c));
    if (static_cast<unsigned char>(c) >= 0x80) shown = fmt::format("'{}'", text_.substr(begin, pos_ - begin));
    diags_.error(range(begin, static_cast<uint32_t>(pos_)), fmt::format("unexpected character {}", shown));
    return std::nullopt;
  }

  Token identifier(uint32_t begin) {
    while (pos_ < text_.size() && is_ident_char(text_[pos_])) ++pos_;
    Token t = make(TokenKind::Identifier, begin);
    if (t.text == "tensor")
      t.kind = TokenKind::KwTensor;
    else if (t.text == "pattern")
      t.kind = TokenKind::KwPattern;
    else if (t.text == "let")
      t.kind = TokenKind::KwLet;
    else if (t.text == "require")
      t.kind = TokenKind::KwRequire;
    else if (t.text == "true")
      t.kind = TokenKind::KwTrue;
    else if (t.text == "false")
      t.kind = TokenKind::KwFalse;
    return t;
  }

  // Decimal integers; floats as 1.0, .5, 2., 1e-3, 1.5E+2.
  Token number(uint32_t begin) {
    bool is_float = false;
    while (is_digit(peek())) ++pos_;
    if (peek() == '.') {
      is_float = true;
      ++pos_;
      while (is_digit(peek())) ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      size_t exponent = pos_;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!is_digit(peek())) {
        diags_.error(range(static_cast<uint32_t>(exponent), static_cast<uint32_t>(pos_)),
                     "expected digits in the exponent of a float literal");
      }
      while (is_digit(peek())) ++pos_;
      is_float = true;
    }
    Token t = make(is_float ? TokenKind::FloatLiteral : TokenKind::IntLiteral, begin);
    if (is_float) {
      // strtod is locale-dependent; from_chars is not.
      double value = 0;
      std::from_chars(t.text.data(), t.text.data() + t.text.size(), value);
      t.float_value = value;
    } else {
      int64_t value = 0;
      auto [ptr, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), value);
      if (ec == std::errc::result_out_of_range) {
        diags_.error(t.where, fmt::format("integer literal {} is too large (the largest is {})", t.text,
                                          std::numeric_limits<int64_t>::max()));
        value = 0;
      }
      t.int_value = value;
    }
    return t;
  }

  // "..." with the escapes \" \\ \n \t; a string ends on its line.
  Token string(uint32_t begin) {
    ++pos_;
    std::string value;
    bool closed = false;
    while (pos_ < text_.size() && text_[pos_] != '\n') {
      char c = text_[pos_++];
      if (c == '"') {
        closed = true;
        break;
      }
      if (c == '\\' && pos_ < text_.size() && text_[pos_] != '\n') {
        char e = text_[pos_++];
        switch (e) {
          case 'n': value += '\n'; break;
          case 't': value += '\t'; break;
          case '"': value += '"'; break;
          case '\\': value += '\\'; break;
          default:
            diags_.error(range(static_cast<uint32_t>(pos_ - 2), static_cast<uint32_t>(pos_)),
                         fmt::format("unknown escape sequence '\\{}'", e));
        }
        continue;
      }
      value += c;
    }
    if (!closed) diags_.error(range(begin, begin + 1), "unterminated string literal");
    Token t = make(TokenKind::StringLiteral, begin);
    t.string_value = std::move(value);
    return t;
  }

  std::optional<TokenKind> punctuation() {
    char c = text_[pos_];
    char n = peek(1);
    auto two = [&](TokenKind kind) {
      pos_ += 2;
      return kind;
    };
    auto one = [&](TokenKind kind) {
      pos_ += 1;
      return kind;
    };
    switch (c) {
      case '(': return one(TokenKind::LParen);
      case ')': return one(TokenKind::RParen);
      case '[': return one(TokenKind::LBracket);
      case ']': return one(TokenKind::RBracket);
      case '{': return one(TokenKind::LBrace);
      case '}': return one(TokenKind::RBrace);
      case ',': return one(TokenKind::Comma);
      case ';': return one(TokenKind::Semicolon);
      case ':': return one(TokenKind::Colon);
      case '+': return one(TokenKind::Plus);
      case '-': return one(TokenKind::Minus);
      case '*': return one(TokenKind::Star);
      case '/': return one(TokenKind::Slash);
      case '%': return one(TokenKind::Percent);
      case '=': return n == '=' ? two(TokenKind::EqualEqual) : one(TokenKind::Assign);
      case '!': return n == '=' ? two(TokenKind::NotEqual) : one(TokenKind::Bang);
      case '<': return n == '=' ? two(TokenKind::LessEqual) : one(TokenKind::Less);
      case '>': return n == '=' ? two(TokenKind::GreaterEqual) : one(TokenKind::Greater);
      case '&': return n == '&' ? two(TokenKind::AmpAmp) : one(TokenKind::Amp);
      case '|': return n == '|' ? two(TokenKind::PipePipe) : one(TokenKind::Pipe);
      default: return std::nullopt;
    }
  }

  std::shared_ptr<const SourceFile> file_;
  const std::string& text_;
  Diagnostics& diags_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<Token> lex(const std::shared_ptr<const SourceFile>& file, Diagnostics& diags) {
  return Lexer(file, diags).run();
}

}  // namespace tessera::dsl
