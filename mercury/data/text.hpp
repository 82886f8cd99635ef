// AG-News-style CSV text classification: RFC 4180 reader, tokenizer, vocabulary, TextDataset.
//
// Contract:
//   parse_csv(text, name) splits RFC 4180 records: fields separated by ',', records by LF or
//   CRLF; a field starting with '"' is quoted and may hold commas, newlines and doubled quotes
//   ("" -> "). Errors (DataError naming file, line and column, 1-based): unterminated quoted
//   field (reported where it opened), a quote inside an unquoted field, anything but ',' or a
//   line end after a closing quote. A final line end is optional; blank lines are skipped.
//   read_text_csv(path, num_classes) reads "class","title","description" records (AG News:
//   class 1..4) into TextRecord{label 0-based, title, description}; a record with other than 3
//   columns or a class outside 1..num_classes is a DataError naming file, line, column.
//   The file size is checked against max_bytes before it is read.
//   tokenize(text): ASCII letters lower-cased; a token is a maximal run of word characters
//   (ASCII letters/digits and every byte >= 0x80, so UTF-8 words survive intact); an apostrophe
//   is kept only between two word characters ("don't" stays one token, "'quoted'" loses its
//   quotes); everything else separates tokens.
//   Vocabulary::build(texts, max_size, min_count): index 0 = "<pad>", 1 = "<oov>", then tokens
//   by descending count, ties by byte-wise ascending token (deterministic), at most max_size
//   entries in total. serialize() = "mercury-vocab 1 <size>\n" + one token per line (index
//   order); Vocabulary::deserialize validates header, size, reserved entries, token characters
//   and uniqueness (DataError naming the line).
//   TextDataset: n x max_length int32 token ids (first max_length tokens, padded with 0),
//   sample_shape [max_length], gather writes ids as floats (exact below 2^24) and labels 0..K-1.
//   All read-only after construction; concurrent gathers into different buffers are safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mercury/data/dataset.hpp"
#include "mercury/data/idx.hpp"
#include "mercury/io/input_file.hpp"

namespace mercury::data {

inline constexpr int32_t kTextPadId = 0;
inline constexpr int32_t kTextOovId = 1;
inline constexpr const char* kTextPadToken = "<pad>";
inline constexpr const char* kTextOovToken = "<oov>";
inline constexpr size_t kDefaultTextMaxBytes = size_t{1} << 30;

using CsvRecord = std::vector<std::string>;

struct CsvRow {
  int64_t line = 0;  // 1-based line where the record starts
  CsvRecord fields;
};

inline std::vector<CsvRow> parse_csv(std::string_view text, const std::string& name) {
  // A UTF-8 byte order mark (spreadsheet exports write one) is not part of the first field.
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::vector<CsvRow> rows;
  const std::string prefix = "CSV file '" + name + "' ";
  int64_t line = 1;
  size_t line_start = 0;
  size_t i = 0;
  const size_t n = text.size();
  auto column = [&](size_t at) { return std::to_string(at - line_start + 1); };
  while (i < n) {
    // Blank line (LF or CRLF) between records.
    if (text[i] == '\n' || (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;
      ++line;
      line_start = i;
      continue;
    }
    CsvRow row;
    row.line = line;
    while (true) {  // one field per iteration
      std::string field;
      if (i < n && text[i] == '"') {
        const int64_t open_line = line;
        const std::string open_column = column(i);
        ++i;
        while (true) {
          if (i >= n) {
            throw DataError(prefix + "line " + std::to_string(open_line) + " column " +
                            open_column + ": unterminated quoted field: expected a closing '\"', " +
                            "found end of file");
          }
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n') {
            ++line;
            line_start = i + 1;
          }
          field += c;
          ++i;
        }
        if (i < n && text[i] != ',' && text[i] != '\n' &&
            !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') &&
            !(text[i] == '\r' && i + 1 == n)) {
          throw DataError(prefix + "line " + std::to_string(line) + " column " + column(i) +
                          ": expected ',' or end of line after a closing quote, found '" +
                          std::string(1, text[i]) + "'");
        }
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"') {
            throw DataError(prefix + "line " + std::to_string(line) + " column " + column(i) +
                            ": expected no '\"' inside an unquoted field (quote the whole field "
                            "and double the quote), found '\"'");
          }
          field += text[i++];
        }
        if (i < n && text[i] == '\r' && !(i + 1 < n && text[i + 1] == '\n') && i + 1 != n) {
          throw DataError(prefix + "line " + std::to_string(line) + " column " + column(i) +
                          ": expected CRLF or LF line ends, found a bare CR");
        }
      }
      row.fields.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      // End of record: CRLF, LF, lone trailing CR, or end of input.
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') ++i;
      ++line;
      line_start = i;
      break;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

struct TextRecord {
  int32_t label = 0;  // 0-based
  std::string title;
  std::string description;
};

inline std::string read_text_file(const std::string& path, size_t max_bytes) {
  try {
    io::InputFile file(path);
    const uint64_t size = file.size().value_or(0);
    if (!file.size()) throw DataError("text file '" + path + "': expected a regular file");
    if (size > max_bytes) {
      throw DataError("text file '" + path + "': size: expected at most " +
                      std::to_string(max_bytes) + " bytes, found " + std::to_string(size));
    }
    std::string text(static_cast<size_t>(size), '\0');
    const size_t got = file.read_fully(text.data(), text.size());
    text.resize(got);
    return text;
  } catch (const std::system_error& error) {
    throw DataError("text file '" + path + "': " + error.what());
  }
}

// "class","title","description" rows -> records; the name is used in error messages.
inline std::vector<TextRecord> parse_text_csv(std::string_view text, const std::string& name,
                                              int64_t num_classes = 4) {
  std::vector<TextRecord> records;
  for (CsvRow& row : parse_csv(text, name)) {
    const std::string where = "CSV file '" + name + "' line " + std::to_string(row.line);
    if (row.fields.size() != 3) {
      throw DataError(where + " column " +
                      std::to_string(std::min<size_t>(row.fields.size(), 3) + 1) +
                      ": expected 3 columns (class, title, description), found " +
                      std::to_string(row.fields.size()));
    }
    const std::string& cls = row.fields[0];
    int64_t value = 0;
    bool ok = !cls.empty() && cls.size() <= 9;
    for (const char c : cls) {
      ok = ok && c >= '0' && c <= '9';
      if (ok) value = value * 10 + (c - '0');
    }
    if (!ok || value < 1 || value > num_classes) {
      throw DataError(where + " column 1 (class): expected an integer 1.." +
                      std::to_string(num_classes) + ", found '" + cls + "'");
    }
    records.push_back(
        {static_cast<int32_t>(value - 1), std::move(row.fields[1]), std::move(row.fields[2])});
  }
  return records;
}

inline std::vector<TextRecord> read_text_csv(const std::string& path, int64_t num_classes = 4,
                                             size_t max_bytes = kDefaultTextMaxBytes) {
  return parse_text_csv(read_text_file(path, max_bytes), path, num_classes);
}

inline bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

// Calls emit(std::string_view token) for each token of `text` (see the contract); `scratch`
// holds the lower-cased token, so no allocation once it has grown.
template <typename Emit>
void for_each_token(std::string_view text, std::string& scratch, Emit&& emit) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    while (i < n && !is_word_byte(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= n) break;
    scratch.clear();
    while (i < n) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (is_word_byte(c)) {
        scratch += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        ++i;
      } else if (c == '\'' && i + 1 < n && is_word_byte(static_cast<unsigned char>(text[i + 1]))) {
        scratch += '\'';
        ++i;
      } else {
        break;
      }
    }
    emit(std::string_view(scratch));
  }
}

inline std::vector<std::string> tokenize(std::string_view text) {
  std::vector<std::string> tokens;
  std::string scratch;
  for_each_token(text, scratch, [&](std::string_view t) { tokens.emplace_back(t); });
  return tokens;
}

class Vocabulary {
 public:
  Vocabulary() { reset({kTextPadToken, kTextOovToken}); }

  // Tokens of `texts` by descending count (ties: byte-wise ascending), at most max_size entries
  // including <pad> and <oov>; tokens seen fewer than min_count times are dropped.
  static Vocabulary build(std::span<const std::string> texts, size_t max_size,
                          int64_t min_count = 1) {
    if (max_size < 2) {
      throw std::invalid_argument(
          "Vocabulary::build: max_size must be >= 2 (<pad>, <oov>), found " +
          std::to_string(max_size));
    }
    std::unordered_map<std::string, int64_t> counts;
    std::string scratch;
    for (const std::string& text : texts) {
      for_each_token(text, scratch, [&](std::string_view t) { ++counts[std::string(t)]; });
    }
    std::vector<std::pair<std::string, int64_t>> ranked(counts.begin(), counts.end());
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    std::vector<std::string> tokens = {kTextPadToken, kTextOovToken};
    for (auto& [token, count] : ranked) {
      if (tokens.size() >= max_size || count < min_count) break;
      tokens.push_back(std::move(token));
    }
    Vocabulary v;
    v.reset(std::move(tokens));
    return v;
  }

  size_t size() const { return tokens_.size(); }
  const std::string& token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  int32_t id(std::string_view token) const {
    const auto it = ids_.find(std::string(token));
    return it == ids_.end() ? kTextOovId : it->second;
  }

  // Writes the ids of the first out.size() tokens of `text`, then pads with kTextPadId.
  // Returns the number of tokens written (before padding).
  size_t encode(std::string_view text, std::span<int32_t> out, std::string& scratch) const {
    size_t count = 0;
    std::string key;
    for_each_token(text, scratch, [&](std::string_view t) {
      if (count < out.size()) {
        key.assign(t);
        const auto it = ids_.find(key);
        out[count++] = it == ids_.end() ? kTextOovId : it->second;
      }
    });
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(count), out.end(), kTextPadId);
    return count;
  }

  std::string serialize() const {
    std::string out = "mercury-vocab 1 " + std::to_string(tokens_.size()) + "\n";
    for (const std::string& t : tokens_) out += t + "\n";
    return out;
  }

  static Vocabulary deserialize(std::string_view text, const std::string& name = "<vocabulary>") {
    const std::string prefix = "vocabulary '" + name + "' ";
    std::vector<std::string_view> lines;
    size_t start = 0;
    while (start < text.size()) {
      const size_t end = text.find('\n', start);
      if (end == std::string_view::npos) {
        throw DataError(prefix + "line " + std::to_string(lines.size() + 1) +
                        ": expected a line ending in '\\n', found end of text");
      }
      lines.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    constexpr std::string_view kMagic = "mercury-vocab 1 ";
    if (lines.empty() || lines[0].substr(0, kMagic.size()) != kMagic) {
      throw DataError(prefix + "line 1: expected header 'mercury-vocab 1 <size>', found '" +
                      std::string(lines.empty() ? "" : lines[0].substr(0, 40)) + "'");
    }
    const std::string_view count_text = lines[0].substr(kMagic.size());
    size_t count = 0;
    bool ok = !count_text.empty() && count_text.size() <= 10;
    for (const char c : count_text) {
      ok = ok && c >= '0' && c <= '9';
      if (ok) count = count * 10 + size_t(c - '0');
    }
    if (!ok || count < 2 || count != lines.size() - 1) {
      throw DataError(prefix + "line 1: expected a size >= 2 equal to the number of token lines (" +
                      std::to_string(lines.size() - 1) + "), found '" + std::string(count_text) +
                      "'");
    }
    if (lines[1] != kTextPadToken || lines[2] != kTextOovToken) {
      throw DataError(prefix + "lines 2-3: expected '<pad>' and '<oov>', found '" +
                      std::string(lines[1]) + "' and '" + std::string(lines[2]) + "'");
    }
    std::vector<std::string> tokens;
    tokens.reserve(count);
    for (size_t i = 1; i < lines.size(); ++i) {
      const std::string_view t = lines[i];
      bool valid = !t.empty();
      for (size_t k = 0; valid && k < t.size(); ++k) {
        const auto c = static_cast<unsigned char>(t[k]);
        valid = (is_word_byte(c) && !(c >= 'A' && c <= 'Z')) ||
                (c == '\'' && k > 0 && k + 1 < t.size());
      }
      if (i <= 2) valid = true;
      if (!valid) {
        throw DataError(prefix + "line " + std::to_string(i + 1) +
                        ": expected a lower-case token (letters, digits, inner apostrophes, "
                        "UTF-8), found '" +
                        std::string(t) + "'");
      }
      tokens.emplace_back(t);
    }
    Vocabulary v;
    v.reset(std::move(tokens), prefix);
    return v;
  }

  friend bool operator==(const Vocabulary& a, const Vocabulary& b) {
    return a.tokens_ == b.tokens_;
  }

 private:
  void reset(std::vector<std::string> tokens, const std::string& prefix = "") {
    tokens_ = std::move(tokens);
    ids_.clear();
    ids_.reserve(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (!ids_.emplace(tokens_[i], static_cast<int32_t>(i)).second) {
        throw DataError(prefix + "line " + std::to_string(i + 2) + ": expected unique tokens, " +
                        "found '" + tokens_[i] + "' twice");
      }
    }
  }

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
};

inline std::string record_text(const TextRecord& r) {
  return r.title + " " + r.description;
}

struct TextDataset final : Dataset {
  int64_t n = 0;
  int64_t max_length = 100;
  int64_t classes = 4;
  std::vector<int32_t> ids;     // n x max_length
  std::vector<int32_t> labels;  // n
  std::string name = "text";

  int64_t size() const override { return n; }
  Shape sample_shape() const override { return Shape{max_length}; }
  int64_t num_classes() const override { return classes; }
  int32_t label(int64_t index) const override { return labels.at(static_cast<size_t>(index)); }
  std::string describe() const override {
    return name + " (" + std::to_string(n) + " texts, " + std::to_string(max_length) +
           " tokens each, " + std::to_string(classes) + " classes)";
  }
  int64_t raw_sample_bytes() const override { return max_length * int64_t(sizeof(int32_t)); }
  std::unique_ptr<Dataset> copy_of(std::span<const int64_t> indices) const override {
    auto d = std::make_unique<TextDataset>();
    d->n = static_cast<int64_t>(indices.size());
    d->max_length = max_length;
    d->classes = classes;
    d->ids = pick_rows(ids, indices, max_length);
    d->labels = pick_rows(labels, indices, 1);
    d->name = name;
    return d;
  }
  void read_raw(int64_t index, std::span<std::byte> out) const override {
    raw_out(ids, index, out);
  }
  void write_raw(int64_t index, std::span<const std::byte> raw, int32_t label) override {
    raw_in(ids, index, raw, label);
    labels[static_cast<size_t>(index)] = label;
  }

  void gather(std::span<const int64_t> indices, float* x, int32_t* y,
              std::mt19937_64* /*no text augmentation*/) const override {
    for (size_t b = 0; b < indices.size(); ++b) {
      const int64_t index = indices[b];
      if (index < 0 || index >= n) {
        throw std::out_of_range("TextDataset '" + name + "': batch position " + std::to_string(b) +
                                " has index " + std::to_string(index) + ", expected 0.." +
                                std::to_string(n - 1));
      }
      const int32_t* source = ids.data() + index * max_length;
      float* out = x + static_cast<int64_t>(b) * max_length;
      for (int64_t i = 0; i < max_length; ++i) out[i] = static_cast<float>(source[i]);
      y[b] = labels[static_cast<size_t>(index)];
    }
  }
};

inline TextDataset make_text_dataset(const std::vector<TextRecord>& records,
                                     const Vocabulary& vocabulary, int64_t num_classes,
                                     int64_t max_length = 100, std::string name = "text") {
  if (max_length < 1) throw std::invalid_argument("make_text_dataset: max_length must be >= 1");
  TextDataset d;
  d.n = static_cast<int64_t>(records.size());
  d.max_length = max_length;
  d.classes = num_classes;
  d.name = std::move(name);
  d.ids.assign(records.size() * static_cast<size_t>(max_length), kTextPadId);
  d.labels.resize(records.size());
  std::string scratch;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].label < 0 || records[i].label >= num_classes) {
      throw std::invalid_argument("make_text_dataset: record " + std::to_string(i) + " has label " +
                                  std::to_string(records[i].label) + ", expected 0.." +
                                  std::to_string(num_classes - 1));
    }
    vocabulary.encode(record_text(records[i]),
                      std::span<int32_t>(d.ids.data() + i * size_t(max_length), size_t(max_length)),
                      scratch);
    d.labels[i] = records[i].label;
  }
  return d;
}

struct TextSplits {
  Vocabulary vocabulary;
  TextDataset train, test;
};

// dir/train.csv + dir/test.csv (AG News layout); the vocabulary comes from the training split.
inline TextSplits load_text_splits(const std::string& directory, int64_t num_classes = 4,
                                   size_t vocabulary_size = 20000, int64_t max_length = 100) {
  const std::vector<TextRecord> train = read_text_csv(directory + "/train.csv", num_classes);
  const std::vector<TextRecord> test = read_text_csv(directory + "/test.csv", num_classes);
  std::vector<std::string> texts;
  texts.reserve(train.size());
  for (const TextRecord& r : train) texts.push_back(record_text(r));
  TextSplits s;
  s.vocabulary = Vocabulary::build(texts, vocabulary_size);
  s.train = make_text_dataset(train, s.vocabulary, num_classes, max_length, directory + "/train");
  s.test = make_text_dataset(test, s.vocabulary, num_classes, max_length, directory + "/test");
  return s;
}

}  // namespace mercury::data
