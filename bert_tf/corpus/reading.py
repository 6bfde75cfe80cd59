"""The corpus as create_pretraining_data reads it: documents streamed from text files (cleaned
when asked), a document longer than MAX_DOCUMENT_LINES lines cut into pieces, grouped into
windows.
"""

from typing import IO, Dict, Iterator, List, Optional, Sequence

from bert_tf.corpus import cleaning
from bert_tf.io import files as io_files

gfile = io_files.gfile  # tf.io.gfile's functions; TensorFlow only for gs:// paths


def _open_text(path: str) -> IO[str]:
  """Local files through Python's own reader (much faster line by line), others through gfile."""
  if "://" in path:
    return gfile.GFile(path, "r")
  return open(path, encoding="utf-8")  # pylint: disable=consider-using-with


# Longer documents are cut into pieces of this many lines. A window holds --documents_per_shard
# documents and draws random next segments from all of them, so this bounds its memory and work
# whatever the input's shape (a corpus without blank lines is one document); google-research's
# chunks of a long document are cut only where a piece ends, one chunk in about 16.
MAX_DOCUMENT_LINES = 64


def read_documents(files: Sequence[str], clean: str = "none",
                   shape: Optional[Dict[str, int]] = None) -> Iterator[List[str]]:
  """Documents (lists of non-blank lines) from text files, streamed; blank lines end documents,
  and a document longer than MAX_DOCUMENT_LINES lines comes as pieces of that many.

  `shape`, when given and the documents all read, gains "lines", "document_breaks" (documents a
  blank line ended), "documents_cut" and "pieces" (the long documents and the pieces they gave).
  """
  lines_read = breaks = cut = pieces = 0
  most = MAX_DOCUMENT_LINES  # a local: this loop runs once a line of the corpus, twice a run
  for path in files:
    lines: List[str] = []
    parts = 0  # pieces of the current document already given
    try:
      with _open_text(path) as f:
        for line in f:
          line = line.strip()
          if line and clean != "none":
            line = cleaning.clean_line_kcbert(line) or ""
          if line:
            if len(lines) == most:
              lines_read += most
              yield lines
              lines, parts = [], parts + 1
            lines.append(line)
          elif lines:
            lines_read += len(lines)
            breaks += 1
            cut, pieces = cut + (parts > 0), pieces + (parts + 1 if parts else 0)
            yield lines
            lines, parts = [], 0
    except UnicodeDecodeError:
      raise io_files.utf8_error(path) from None
    if lines:
      lines_read += len(lines)
      cut, pieces = cut + (parts > 0), pieces + (parts + 1 if parts else 0)
      yield lines
  if shape is not None:
    for name, value in (("lines", lines_read), ("document_breaks", breaks),
                        ("documents_cut", cut), ("pieces", pieces)):
      shape[name] = shape.get(name, 0) + value


def corpus_shape(files: Sequence[str], clean: str = "none") -> Dict[str, int]:
  """The count pass: "documents" (pieces included) and read_documents' shape counts."""
  shape: Dict[str, int] = {}
  shape["documents"] = sum(1 for _ in read_documents(files, clean, shape))
  return shape


def windows(files: Sequence[str], clean: str, size: int) -> Iterator[List[List[str]]]:
  window: List[List[str]] = []
  for document in read_documents(files, clean):
    window.append(document)
    if len(window) == size:
      yield window
      window = []
  if window:
    yield window
