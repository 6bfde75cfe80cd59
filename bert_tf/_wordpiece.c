/* google-research/bert's FullTokenizer (BasicTokenizer, then WordPiece) in C, token for token.
 *
 * Why our own C and not Hugging Face tokenizers or tf.text: both differ from google-research on
 * some texts (benchmarks.tokenization counts them), and pure Python stays several times slower
 * than either. bert_tf/tokenization.py uses this module when it was compiled (`make install`
 * runs `setup.py build_ext --inplace`) and its own Python otherwise; both are tested against
 * tf-models-official's port of google-research's tokenization on the same texts.
 *
 * The character rules are not restated here. `classify` (tokenization._compiled_flags) decides,
 * once per code point and process, whether google-research deletes it (DROP), splits on it
 * (SPACE) or makes it its own word (SPLIT: punctuation and CJK ideographs); this file applies
 * them in one pass. Lowercasing is done here only for chunks (text between whitespace) that are
 * all ASCII, where it is A-Z to a-z and NFD changes nothing; any other chunk is handed to
 * `basic_words` (BasicTokenizer.tokenize), since str.lower and NFD are context sensitive.
 * Words (and lowercased non-ASCII chunks) are cached with their ids, as FullTokenizer's Python
 * caches are, and the caches are emptied when they reach CACHE_ENTRIES entries.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define KNOWN 0x80
#define DROP 1
#define SPACE 2
#define SPLIT 4
#define MAX_CODE_POINT 0x110000
#define BMP 0x10000
#define UNBOUNDED 0xFFFF
#define EMPTY UINT32_MAX
#define CACHE_ENTRIES (1 << 18)
#define CACHE_POOL_LIMIT (1u << 24) /* code points (or ids) a cache holds: 64 MB */

/* Code point -> flags | KNOWN; 0 until `classify` has seen it. Shared by every tokenizer. */
static uint8_t *char_flags;

/* Growable arrays ------------------------------------------------------------------------- */

typedef struct {
  uint32_t *data;
  size_t len, cap;
} Buffer;

static int buffer_reserve(Buffer *b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra) cap *= 2;
  uint32_t *data = PyMem_Realloc(b->data, cap * sizeof(uint32_t));
  if (!data) {
    PyErr_NoMemory();
    return -1;
  }
  b->data = data;
  b->cap = cap;
  return 0;
}

static int buffer_push(Buffer *b, uint32_t value) {
  if (b->len == b->cap && buffer_reserve(b, 1) < 0) return -1;
  b->data[b->len++] = value;
  return 0;
}

static int buffer_extend(Buffer *b, const uint32_t *values, size_t n) {
  /* memcpy's pointers must not be NULL even for no bytes: an empty buffer's data is NULL
   * (a lowercased chunk of marks alone has no words; UBSan found it). */
  if (n == 0) return 0;
  if (buffer_reserve(b, n) < 0) return -1;
  memcpy(b->data + b->len, values, n * sizeof(uint32_t));
  b->len += n;
  return 0;
}

static void buffer_free(Buffer *b) {
  PyMem_Free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Hash tables from code point sequences to id sequences (or to one id) -------------------- */

typedef struct {
  uint64_t hash;
  uint32_t key_offset, key_length;   /* in keys; key_offset EMPTY marks a free slot */
  uint32_t value_offset, value_length; /* in values, or the id itself for vocab tables */
} Slot;

typedef struct {
  Slot *slots;
  size_t mask, count;
  Buffer keys, values;
} Table;

static uint64_t hash_code_points(const uint32_t *key, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a, a code point at a time */
  for (size_t i = 0; i < n; i++) {
    h ^= key[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static int table_init(Table *t, size_t slots) {
  t->slots = PyMem_Malloc(slots * sizeof(Slot));
  if (!t->slots) {
    PyErr_NoMemory();
    return -1;
  }
  for (size_t i = 0; i < slots; i++) t->slots[i].key_offset = EMPTY;
  t->mask = slots - 1;
  t->count = 0;
  return 0;
}

static void table_free(Table *t) {
  PyMem_Free(t->slots);
  t->slots = NULL;
  buffer_free(&t->keys);
  buffer_free(&t->values);
}

static void table_clear(Table *t) {
  for (size_t i = 0; i <= t->mask; i++) t->slots[i].key_offset = EMPTY;
  t->count = 0;
  t->keys.len = t->values.len = 0;
}

/* The slot holding `key`, or the free slot where it would go. */
static Slot *table_find(const Table *t, const uint32_t *key, size_t n, uint64_t h) {
  size_t i = (size_t)h & t->mask;
  for (;;) {
    Slot *s = &t->slots[i];
    if (s->key_offset == EMPTY) return s;
    if (s->hash == h && s->key_length == n &&
        memcmp(t->keys.data + s->key_offset, key, n * sizeof(uint32_t)) == 0)
      return s;
    i = (i + 1) & t->mask;
  }
}

static int table_grow(Table *t) {
  Slot *old = t->slots;
  size_t old_size = t->mask + 1;
  if (table_init(t, old_size * 2) < 0) {
    t->slots = old;
    return -1;
  }
  for (size_t i = 0; i < old_size; i++) {
    if (old[i].key_offset == EMPTY) continue;
    size_t j = (size_t)old[i].hash & t->mask;
    while (t->slots[j].key_offset != EMPTY) j = (j + 1) & t->mask;
    t->slots[j] = old[i];
    t->count++;
  }
  PyMem_Free(old);
  return 0;
}

/* Adds key -> (value_offset, value_length); the key must not be in the table. */
static int table_add(Table *t, const uint32_t *key, size_t n, uint64_t h,
                     uint32_t value_offset, uint32_t value_length) {
  if ((t->count + 1) * 2 > t->mask + 1 && table_grow(t) < 0) return -1;
  Slot *s = table_find(t, key, n, h);
  size_t offset = t->keys.len;
  if (buffer_extend(&t->keys, key, n) < 0) return -1;
  s->hash = h;
  s->key_offset = (uint32_t)offset;
  s->key_length = (uint32_t)n;
  s->value_offset = value_offset;
  s->value_length = value_length;
  t->count++;
  return 0;
}

/* The tokenizer ----------------------------------------------------------------------------- */

typedef struct {
  PyObject_HEAD
  int do_lower_case;
  size_t max_chars;
  uint32_t unk_id;
  PyObject *tokens; /* list: id -> its token (str), None for ids no token has */
  PyObject *ids;    /* list: id -> int */
  PyObject *classify;
  PyObject *basic_words;
  Table first_pieces; /* token -> id */
  Table next_pieces;  /* token without its "##" -> id */
  uint16_t *longest_first, *longest_next; /* BMP first character -> longest piece, UNBOUNDED */
  size_t longest_first_other, longest_next_other; /* the same for characters beyond the BMP */
  Table words;  /* word -> its ids */
  Table chunks; /* lowercased non-ASCII chunk -> its ids */
} Tokenizer;

static uint8_t flags_of(Tokenizer *self, uint32_t c) {
  uint8_t f = char_flags[c];
  if (f) return f;
  PyObject *result = PyObject_CallFunction(self->classify, "I", (unsigned int)c);
  if (!result) return 0;
  long value = PyLong_AsLong(result);
  Py_DECREF(result);
  if (value == -1 && PyErr_Occurred()) return 0;
  f = (uint8_t)((value & (DROP | SPACE | SPLIT)) | KNOWN);
  char_flags[c] = f;
  return f;
}

static size_t longest_piece(const uint16_t *bmp, size_t other, uint32_t c, size_t remaining) {
  size_t longest = c < BMP ? bmp[c] : other;
  if (c < BMP && longest == UNBOUNDED) return remaining;
  return longest < remaining ? longest : remaining;
}

/* Appends the ids of one word: google-research's greedy longest-match-first WordPiece. A word
 * of more than max_chars characters, or with a position no piece matches, is one [UNK]. */
static int wordpiece(Tokenizer *self, const uint32_t *word, size_t n, Buffer *out) {
  size_t mark = out->len;
  if (n > self->max_chars) return buffer_push(out, self->unk_id);
  size_t start = 0;
  while (start < n) {
    const Table *table = start ? &self->next_pieces : &self->first_pieces;
    size_t end = start + (start ? longest_piece(self->longest_next, self->longest_next_other,
                                                word[start], n - start)
                                : longest_piece(self->longest_first, self->longest_first_other,
                                                word[start], n - start));
    uint32_t id = EMPTY;
    for (; end > start; end--) {
      const Slot *s = table_find(table, word + start, end - start,
                                 hash_code_points(word + start, end - start));
      if (s->key_offset != EMPTY) {
        id = s->value_offset;
        break;
      }
    }
    if (id == EMPTY) {
      out->len = mark;
      return buffer_push(out, self->unk_id);
    }
    if (buffer_push(out, id) < 0) return -1;
    start = end;
  }
  return 0;
}

/* Looks `key` up in a cache table; on a hit appends its ids and returns 1, else returns 0. */
static int cached(const Table *t, const uint32_t *key, size_t n, uint64_t h, Buffer *out) {
  const Slot *s = table_find(t, key, n, h);
  if (s->key_offset == EMPTY) return 0;
  if (buffer_extend(out, t->values.data + s->value_offset, s->value_length) < 0) return -1;
  return 1;
}

/* Remembers out[mark:] as the ids of `key`, emptying the cache first when it is full. */
static int remember(Table *t, const uint32_t *key, size_t n, uint64_t h, const Buffer *out,
                    size_t mark) {
  size_t count = out->len - mark;
  if (t->count >= CACHE_ENTRIES || t->keys.len + n > CACHE_POOL_LIMIT ||
      t->values.len + count > CACHE_POOL_LIMIT)
    table_clear(t);
  size_t offset = t->values.len;
  if (buffer_extend(&t->values, out->data + mark, count) < 0) return -1;
  return table_add(t, key, n, h, (uint32_t)offset, (uint32_t)count);
}

static int add_word(Tokenizer *self, const uint32_t *word, size_t n, Buffer *out) {
  if (n == 0) return 0;
  if (n > self->max_chars) return buffer_push(out, self->unk_id); /* not worth a cache entry */
  uint64_t h = hash_code_points(word, n);
  int hit = cached(&self->words, word, n, h, out);
  if (hit) return hit < 0 ? -1 : 0;
  size_t mark = out->len;
  if (wordpiece(self, word, n, out) < 0) return -1;
  return remember(&self->words, word, n, h, out, mark);
}

/* A lowercased chunk of ASCII: A-Z to a-z, then punctuation split off into words of its own. */
static int add_ascii_chunk(Tokenizer *self, uint32_t *chunk, size_t n, Buffer *out) {
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    if (char_flags[chunk[i]] & SPLIT) { /* set by text_ids, which classified every character */
      if (add_word(self, chunk + start, i - start, out) < 0) return -1;
      if (add_word(self, chunk + i, 1, out) < 0) return -1;
      start = i + 1;
    } else if (chunk[i] >= 'A' && chunk[i] <= 'Z') {
      chunk[i] += 'a' - 'A';
    }
  }
  return add_word(self, chunk + start, n - start, out);
}

/* A lowercased chunk with non-ASCII characters: its words from `basic_words`, cached. */
static int add_other_chunk(Tokenizer *self, const uint32_t *chunk, size_t n, Buffer *out) {
  uint64_t h = hash_code_points(chunk, n);
  int hit = cached(&self->chunks, chunk, n, h, out);
  if (hit) return hit < 0 ? -1 : 0;
  size_t mark = out->len;
  PyObject *text = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, chunk, (Py_ssize_t)n);
  if (!text) return -1;
  PyObject *words = PyObject_CallOneArg(self->basic_words, text);
  Py_DECREF(text);
  if (!words) return -1;
  PyObject *sequence = PySequence_Fast(words, "basic_words must return a sequence of str");
  Py_DECREF(words);
  if (!sequence) return -1;
  Buffer word = {0};
  int status = 0;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(sequence) && status == 0; i++) {
    PyObject *item = PySequence_Fast_GET_ITEM(sequence, i);
    if (!PyUnicode_Check(item)) {
      PyErr_SetString(PyExc_TypeError, "basic_words must return str words");
      status = -1;
      break;
    }
    size_t length = (size_t)PyUnicode_GET_LENGTH(item);
    word.len = 0;
    if (buffer_reserve(&word, length + 1) < 0 ||
        !PyUnicode_AsUCS4(item, (Py_UCS4 *)word.data, (Py_ssize_t)length + 1, 0)) {
      status = -1;
      break;
    }
    status = add_word(self, word.data, length, out);
  }
  buffer_free(&word);
  Py_DECREF(sequence);
  if (status < 0) return -1;
  return remember(&self->chunks, chunk, n, h, out, mark);
}

/* The ids of `text` (a str), appended to `out`. */
static int text_ids(Tokenizer *self, PyObject *text, Buffer *out) {
  if (!PyUnicode_Check(text)) {
    PyErr_Format(PyExc_TypeError, "expected str, got %.100s", Py_TYPE(text)->tp_name);
    return -1;
  }
  int kind = PyUnicode_KIND(text);
  const void *data = PyUnicode_DATA(text);
  size_t n = (size_t)PyUnicode_GET_LENGTH(text);
  /* The current word (cased) or chunk (lowercased), without the characters google deletes. */
  Buffer part = {0};
  int non_ascii = 0, status = 0;
  if (buffer_reserve(&part, 64) < 0) return -1;
  for (size_t i = 0; i <= n && status == 0; i++) {
    uint32_t c = 0;
    uint8_t f = SPACE; /* the end of the text ends the last word */
    if (i < n) {
      c = PyUnicode_READ(kind, data, i);
      f = flags_of(self, c);
      if (!f) {
        status = -1;
        break;
      }
    }
    if (f & DROP) continue;
    if (self->do_lower_case) {
      if (!(f & SPACE)) {
        non_ascii |= c >= 128;
        status = buffer_push(&part, c);
        continue;
      }
      if (part.len)
        status = non_ascii ? add_other_chunk(self, part.data, part.len, out)
                           : add_ascii_chunk(self, part.data, part.len, out);
      part.len = 0;
      non_ascii = 0;
    } else if (f & (SPACE | SPLIT)) {
      status = add_word(self, part.data, part.len, out);
      part.len = 0;
      if (status == 0 && (f & SPLIT)) status = add_word(self, &c, 1, out);
    } else {
      status = buffer_push(&part, c);
    }
  }
  buffer_free(&part);
  return status;
}

static PyObject *ids_to_list(const Buffer *ids, PyObject *table) {
  PyObject *list = PyList_New((Py_ssize_t)ids->len);
  if (!list) return NULL;
  for (size_t i = 0; i < ids->len; i++) {
    PyObject *item = PyList_GET_ITEM(table, ids->data[i]);
    Py_INCREF(item);
    PyList_SET_ITEM(list, (Py_ssize_t)i, item);
  }
  return list;
}

static PyObject *Tokenizer_convert(Tokenizer *self, PyObject *text, PyObject *table) {
  Buffer ids = {0};
  PyObject *result = NULL;
  if (text_ids(self, text, &ids) == 0) result = ids_to_list(&ids, table);
  buffer_free(&ids);
  return result;
}

static PyObject *Tokenizer_tokenize(Tokenizer *self, PyObject *text) {
  return Tokenizer_convert(self, text, self->tokens);
}

static PyObject *Tokenizer_tokenize_to_ids(Tokenizer *self, PyObject *text) {
  return Tokenizer_convert(self, text, self->ids);
}

/* (tokens, ids, counts) of a sequence of str: every word's tokens, joined, and how many each
 * word gave. One call for the whitespace-separated words of a SQuAD paragraph. */
static PyObject *Tokenizer_tokenize_words(Tokenizer *self, PyObject *words) {
  PyObject *sequence = PySequence_Fast(words, "tokenize_words takes a sequence of str");
  if (!sequence) return NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
  Buffer ids = {0};
  PyObject *counts = PyList_New(n), *result = NULL;
  if (!counts) goto done;
  for (Py_ssize_t i = 0; i < n; i++) {
    size_t before = ids.len;
    if (text_ids(self, PySequence_Fast_GET_ITEM(sequence, i), &ids) < 0) goto done;
    PyObject *count = PyLong_FromSize_t(ids.len - before);
    if (!count) goto done;
    PyList_SET_ITEM(counts, i, count);
  }
  PyObject *tokens = ids_to_list(&ids, self->tokens);
  PyObject *id_list = tokens ? ids_to_list(&ids, self->ids) : NULL;
  if (id_list) result = PyTuple_Pack(3, tokens, id_list, counts);
  Py_XDECREF(tokens);
  Py_XDECREF(id_list);
done:
  Py_XDECREF(counts);
  Py_DECREF(sequence);
  buffer_free(&ids);
  return result;
}

static void set_longest(uint16_t *bmp, size_t *other, const uint32_t *piece, size_t n) {
  if (n == 0) return;
  if (piece[0] >= BMP) {
    if (n > *other) *other = n;
    return;
  }
  size_t length = n >= UNBOUNDED ? UNBOUNDED : n;
  if (length > bmp[piece[0]]) bmp[piece[0]] = (uint16_t)length;
}

/* Adds one vocab entry to the piece tables (a later entry of the same token wins, as in a dict). */
static int add_vocab_entry(Tokenizer *self, PyObject *token, uint32_t id) {
  size_t n = (size_t)PyUnicode_GET_LENGTH(token);
  Py_UCS4 *piece = PyUnicode_AsUCS4Copy(token);
  if (!piece) return -1;
  int status = 0;
  int next = n >= 2 && piece[0] == '#' && piece[1] == '#';
  for (int pass = 0; pass < 1 + next && status == 0; pass++) {
    Table *t = pass ? &self->next_pieces : &self->first_pieces;
    const uint32_t *key = pass ? piece + 2 : piece;
    size_t length = pass ? n - 2 : n;
    uint64_t h = hash_code_points(key, length);
    Slot *s = table_find(t, key, length, h);
    if (s->key_offset != EMPTY) {
      s->value_offset = id;
      continue;
    }
    status = table_add(t, key, length, h, id, 0);
    if (pass) set_longest(self->longest_next, &self->longest_next_other, key, length);
    else set_longest(self->longest_first, &self->longest_first_other, key, length);
  }
  PyMem_Free(piece);
  return status;
}

static int Tokenizer_init(Tokenizer *self, PyObject *args, PyObject *kwargs) {
  static char *keywords[] = {"vocab", "unk_token", "max_input_chars_per_word", "do_lower_case",
                             "classify", "basic_words", NULL};
  PyObject *vocab, *unk_token, *classify, *basic_words;
  Py_ssize_t max_chars;
  int do_lower_case;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!UnpOO:Tokenizer", keywords, &PyDict_Type,
                                   &vocab, &unk_token, &max_chars, &do_lower_case, &classify,
                                   &basic_words))
    return -1;
  if (self->tokens) {
    PyErr_SetString(PyExc_RuntimeError, "Tokenizer is initialised once");
    return -1;
  }
  PyObject *unk = PyDict_GetItemWithError(vocab, unk_token);
  if (!unk) {
    if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, unk_token);
    return -1;
  }
  long max_id = -1;
  PyObject *key, *value;
  Py_ssize_t position = 0;
  while (PyDict_Next(vocab, &position, &key, &value)) {
    long id = PyLong_AsLong(value);
    if (id == -1 && PyErr_Occurred()) return -1;
    if (!PyUnicode_Check(key) || id < 0 || id >= (long)EMPTY) {
      PyErr_SetString(PyExc_ValueError, "vocab must map str tokens to ids >= 0");
      return -1;
    }
    if (id > max_id) max_id = id;
  }
  self->do_lower_case = do_lower_case;
  self->max_chars = max_chars < 0 ? 0 : (size_t)max_chars;
  self->unk_id = (uint32_t)PyLong_AsLong(unk);
  self->tokens = PyList_New(max_id + 1);
  self->ids = PyList_New(max_id + 1);
  self->longest_first = PyMem_Calloc(BMP, sizeof(uint16_t));
  self->longest_next = PyMem_Calloc(BMP, sizeof(uint16_t));
  if (!self->tokens || !self->ids || !self->longest_first || !self->longest_next) {
    if (!PyErr_Occurred()) PyErr_NoMemory();
    return -1;
  }
  for (long i = 0; i <= max_id; i++) {
    Py_INCREF(Py_None);
    PyList_SET_ITEM(self->tokens, i, Py_None);
    PyObject *number = PyLong_FromLong(i);
    if (!number) return -1;
    PyList_SET_ITEM(self->ids, i, number);
  }
  if (table_init(&self->first_pieces, 1 << 16) < 0 || table_init(&self->next_pieces, 1 << 16) < 0 ||
      table_init(&self->words, 1 << 12) < 0 || table_init(&self->chunks, 1 << 8) < 0)
    return -1;
  position = 0;
  while (PyDict_Next(vocab, &position, &key, &value)) {
    uint32_t id = (uint32_t)PyLong_AsLong(value);
    PyObject *unused = PyList_GET_ITEM(self->tokens, id);
    Py_INCREF(key);
    PyList_SET_ITEM(self->tokens, id, key);
    Py_DECREF(unused);
    if (add_vocab_entry(self, key, id) < 0) return -1;
  }
  Py_INCREF(classify);
  self->classify = classify;
  Py_INCREF(basic_words);
  self->basic_words = basic_words;
  return 0;
}

static int Tokenizer_traverse(Tokenizer *self, visitproc visit, void *arg) {
  Py_VISIT(self->classify);
  Py_VISIT(self->basic_words);
  return 0;
}

static int Tokenizer_clear(Tokenizer *self) {
  Py_CLEAR(self->classify);
  Py_CLEAR(self->basic_words);
  return 0;
}

static void Tokenizer_dealloc(Tokenizer *self) {
  PyObject_GC_UnTrack(self);
  Tokenizer_clear(self);
  Py_XDECREF(self->tokens);
  Py_XDECREF(self->ids);
  PyMem_Free(self->longest_first);
  PyMem_Free(self->longest_next);
  table_free(&self->first_pieces);
  table_free(&self->next_pieces);
  table_free(&self->words);
  table_free(&self->chunks);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Tokenizer_methods[] = {
    {"tokenize", (PyCFunction)Tokenizer_tokenize, METH_O, "The WordPiece tokens of a str."},
    {"tokenize_to_ids", (PyCFunction)Tokenizer_tokenize_to_ids, METH_O,
     "The vocab ids of the WordPiece tokens of a str."},
    {"tokenize_words", (PyCFunction)Tokenizer_tokenize_words, METH_O,
     "(tokens, ids, counts): the tokens of each str of a sequence, joined, their ids, and how "
     "many each str gave."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TokenizerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bert_tf._wordpiece.Tokenizer",
    .tp_basicsize = sizeof(Tokenizer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Tokenizer(vocab, unk_token, max_input_chars_per_word, do_lower_case, classify, "
              "basic_words): google-research's FullTokenizer.tokenize in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tokenizer_init,
    .tp_dealloc = (destructor)Tokenizer_dealloc,
    .tp_traverse = (traverseproc)Tokenizer_traverse,
    .tp_clear = (inquiry)Tokenizer_clear,
    .tp_methods = Tokenizer_methods,
};

static struct PyModuleDef wordpiece_module = {
    PyModuleDef_HEAD_INIT, .m_name = "bert_tf._wordpiece",
    .m_doc = "google-research/bert's FullTokenizer.tokenize in C (see bert_tf/tokenization.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__wordpiece(void) {
  char_flags = PyMem_RawCalloc(MAX_CODE_POINT, 1);
  if (!char_flags) return PyErr_NoMemory();
  if (PyType_Ready(&TokenizerType) < 0) return NULL;
  PyObject *module = PyModule_Create(&wordpiece_module);
  if (!module) return NULL;
  Py_INCREF(&TokenizerType);
  if (PyModule_AddObject(module, "Tokenizer", (PyObject *)&TokenizerType) < 0) {
    Py_DECREF(&TokenizerType);
    Py_DECREF(module);
    return NULL;
  }
  if (PyModule_AddIntConstant(module, "DROP", DROP) < 0 ||
      PyModule_AddIntConstant(module, "SPACE", SPACE) < 0 ||
      PyModule_AddIntConstant(module, "SPLIT", SPLIT) < 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}
