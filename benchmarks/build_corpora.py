#!/usr/bin/env python3
"""Build the zh and multi benchmark corpora: JSONL, one ``{"text": ...}`` per document.

The companion of ``../shared/corpora/build.py`` (en, code, ja), in the same style: the text is read
from the files of named Debian packages (``dpkg -L``), written and translated by people, not generated.
Only the named packages' files are read, in sorted path order, so two machines with the same
package versions build the same bytes.

zh, Chinese (Simplified and Traditional) prose, about 11 MB:
  manpages-zh                 the manual pages under /usr/share/man/zh_CN and zh_TW, roff source as
                              is (like the ja corpus: Chinese prose with roff markup), one per page;
                              pages left in English (under ZH_MIN_CJK of their characters CJK, e.g.
                              perlfunc) are left out
  debian-reference-zh-cn/-tw  the Debian Reference, each HTML chapter stripped to text
  debian-faq-zh-cn            the Debian FAQ, each HTML page stripped to text
  maint-guide-zh-cn/-tw       the Debian New Maintainers' Guide, each HTML page stripped to text

multi, many locales and scripts, about 10 MB:
  coreutils, libglib2.0-data, libgtk2.0-common, libpam-runtime
                              their gettext catalogues (.mo: domains coreutils, glib20, gtk20,
                              Linux-PAM) of every locale they ship, about 120: Latin, Cyrillic, Greek,
                              Arabic, Hebrew, Armenian, Georgian, Indic, Thai, Hangul, CJK, ...; the
                              translated strings only (msgstr, plural forms included; not the English
                              msgid nor the header), in documents of MO_DOC_BYTES of consecutive
                              strings; per locale a seeded random choice of MO_CAP bytes or more
  manpages-{de,fr,es,it,pl,pt-br,ru,uk,nl,cs,da,el,fi,hu,id,ro,sv,vi,tr,mk,nb,sr}
                              manual pages, roff source, one per page; per language a seeded random
                              choice of whole pages of at least MAN_CAP bytes in all (so that no
                              language dominates)
  debian-reference-{de,es,fr,id,it,pt,pt-br}
                              the Debian Reference, HTML chapters stripped to text; per language a
                              seeded random choice of whole chapters of at least REFERENCE_CAP bytes

Usage (from the repository root)::

    python3 benchmarks/build_corpora.py /tmp/bpetok-corpora --install      # both sets
    python3 benchmarks/build_corpora.py OUT_DIR --sets zh

``--install`` runs ``apt-get install`` for the packages (needs root and Debian's package registry;
run ``apt-get update`` first). Without it, missing packages are reported and their files skipped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

MAN_LANGS = "de fr es it pl pt-br ru uk nl cs da el fi hu id ro sv vi tr mk nb sr".split()
REFERENCE_LANGS = "de es fr id it pt pt-br".split()
CATALOGUES = [  # (package, gettext domain): UI strings translated into many locales and scripts
    ("coreutils", "coreutils"),
    ("libglib2.0-data", "glib20"),
    ("libgtk2.0-common", "gtk20"),
    ("libpam-runtime", "Linux-PAM"),
]
MO_CAP = 40_000  # bytes of catalogue translations per locale in multi
MAN_CAP = 150_000  # bytes of man pages per language in multi
REFERENCE_CAP = 200_000  # bytes of Debian Reference per language in multi
MO_DOC_BYTES = 20_000  # a document of multi: consecutive strings of one catalogue, at least this long
ZH_MIN_CJK = 0.1  # a zh man page is kept if at least this share of its characters are CJK
CJK = re.compile("[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]")
SEED = 0

ZH_PACKAGES = [
    "manpages-zh",
    "debian-reference-zh-cn",
    "debian-reference-zh-tw",
    "debian-faq-zh-cn",
    "maint-guide-zh-cn",
    "maint-guide-zh-tw",
]
MULTI_PACKAGES = [
    *(package for package, _ in CATALOGUES),
    *(f"manpages-{lang}" for lang in MAN_LANGS),
    *(f"debian-reference-{lang}" for lang in REFERENCE_LANGS),
]
PACKAGES = {"zh": ZH_PACKAGES, "multi": MULTI_PACKAGES}


# ---- files of a package ---------------------------------------------------------------------------


def package_files(package: str) -> list[str]:
    """The regular files a Debian package installed, sorted; empty if it is not installed."""
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  {package}: not installed (use --install); skipped", file=sys.stderr)
        return []
    return sorted(p for p in out.stdout.splitlines() if os.path.isfile(p))


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if path.endswith(".gz") else data


def read_utf8(path: str) -> str | None:
    try:
        return read_bytes(path).decode("utf-8")
    except (UnicodeDecodeError, OSError, EOFError):
        return None


def man_pages(package: str) -> list[str]:
    return [p for p in package_files(package) if "/share/man/" in p and p.endswith(".gz")]


def html_pages(package: str) -> list[str]:
    return [p for p in package_files(package) if p.endswith(".html")]


# ---- HTML to text ---------------------------------------------------------------------------------

BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "pre", "blockquote",
    "h1", "h2", "h3", "h4", "h5", "h6", "title", "section", "hr",
}  # fmt: skip
SKIP_TAGS = {"script", "style", "head"}


class _TextExtractor(HTMLParser):
    """The text of an HTML page: a newline at each block boundary, <pre> kept as it is."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP_TAGS:
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (line.strip(" ") for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


# ---- gettext catalogues ---------------------------------------------------------------------------


def mo_translations(data: bytes) -> list[str]:
    """The translated strings (msgstr) of a GNU .mo catalogue, in file order, without its header.

    Format (GNU gettext manual, "The Format of GNU MO Files"): a magic number giving the byte order,
    a revision, the number of strings N, the offsets of the table of original strings and of the table
    of translations; each table holds N (length, offset) pairs. Plural forms are NUL-separated.
    """
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic == 0x950412DE else ">"
    _, n, _, translations = struct.unpack(order + "4I", data[4:20])
    charset = "utf-8"
    out: list[str] = []
    for i in range(n):
        length, offset = struct.unpack(order + "2I", data[translations + 8 * i : translations + 8 * i + 8])
        raw = data[offset : offset + length]
        if i == 0 and b"Content-Type:" in raw:  # the header: the msgstr of the empty msgid
            m = re.search(rb"charset=([-\w]+)", raw)
            charset = m.group(1).decode("ascii") if m else charset
            continue
        out.extend(s for s in raw.decode(charset).split("\0") if s)
    return out


# ---- the two corpora ------------------------------------------------------------------------------


def capped_choice(texts: dict[str, str], cap: int, seed: str) -> list[str]:
    """Keys of a seeded random choice of whole documents of at least ``cap`` bytes in all, sorted."""
    order = sorted(texts)
    random.Random(f"{SEED}:{seed}").shuffle(order)
    chosen, total = [], 0
    for key in order:
        if total >= cap:
            break
        chosen.append(key)
        total += len(texts[key].encode("utf-8"))
    return sorted(chosen)


def read_all(paths: list[str], html: bool = False) -> dict[str, str]:
    texts = {}
    for p in paths:
        text = read_utf8(p)
        if text is not None:
            texts[p] = html_to_text(text) if html else text
    return texts


def zh_docs() -> Iterator[str]:
    for text in read_all(man_pages("manpages-zh")).values():  # /usr/share/man/zh_CN and zh_TW
        if len(CJK.findall(text)) >= ZH_MIN_CJK * len(text):
            yield text
    for package in ZH_PACKAGES[1:]:
        yield from read_all(html_pages(package), html=True).values()


def catalogue_chunks(path: str) -> dict[str, str]:
    """A .mo catalogue's translations as documents of consecutive strings, each of MO_DOC_BYTES or more."""
    try:
        strings = mo_translations(read_bytes(path))
    except (UnicodeDecodeError, LookupError, struct.error):
        return {}
    chunks: dict[str, str] = {}
    doc: list[str] = []
    size = 0
    for i, text in enumerate(strings):
        doc.append(text)
        size += len(text.encode("utf-8"))
        if size >= MO_DOC_BYTES or i == len(strings) - 1:
            chunks[f"{path}#{len(chunks):04d}"] = "\n\n".join(doc) + "\n"
            doc, size = [], 0
    return chunks


def multi_docs() -> Iterator[str]:
    by_locale: dict[str, dict[str, str]] = {}
    for package, domain in CATALOGUES:
        for p in package_files(package):
            # /usr/share/locale/<locale>/LC_MESSAGES/<domain>.mo (coreutils' LC_TIME/ holds copies)
            if p.startswith("/usr/share/locale/") and p.endswith(f"/LC_MESSAGES/{domain}.mo"):
                by_locale.setdefault(p.split("/")[4], {}).update(catalogue_chunks(p))
    for locale in sorted(by_locale):
        texts = by_locale[locale]
        for key in capped_choice(texts, MO_CAP, f"mo:{locale}"):
            yield texts[key]
    for lang in MAN_LANGS:
        texts = read_all(man_pages(f"manpages-{lang}"))
        for key in capped_choice(texts, MAN_CAP, f"man:{lang}"):
            yield texts[key]
    for lang in REFERENCE_LANGS:
        texts = read_all(html_pages(f"debian-reference-{lang}"), html=True)
        for key in capped_choice(texts, REFERENCE_CAP, f"reference:{lang}"):
            yield texts[key]


DOCS = {"zh": zh_docs, "multi": multi_docs}


# ---- summary --------------------------------------------------------------------------------------

SCRIPTS = [  # (first code point, script) in increasing order; a rough grouping for the summary
    (0x0000, "ASCII"), (0x0080, "Latin"), (0x0370, "Greek"), (0x0400, "Cyrillic"), (0x0530, "Armenian"),
    (0x0590, "Hebrew"), (0x0600, "Arabic"), (0x0700, "other"), (0x0900, "Indic"), (0x0E00, "Thai/Lao"),
    (0x0F00, "other"), (0x10A0, "Georgian"), (0x1100, "Hangul"), (0x1200, "other"), (0x1E00, "Latin"),
    (0x1F00, "Greek"), (0x2000, "punct/symbols"), (0x2E80, "CJK"), (0xA000, "other"), (0xAC00, "Hangul"),
    (0xD800, "other"), (0xF900, "CJK"), (0xFB00, "other"), (0xFF00, "CJK"), (0xFFF0, "other"),
]  # fmt: skip


def script_of(cp: int) -> str:
    name = "other"
    for start, script in SCRIPTS:
        if cp < start:
            break
        name = script
    return name


def script_shares(texts: list[str]) -> str:
    counts: Counter[str] = Counter()
    for text in texts:
        for ch, n in Counter(text).items():
            counts[script_of(ord(ch))] += n
    total = sum(counts.values()) or 1
    return ", ".join(f"{s} {100 * n / total:.0f}%" for s, n in counts.most_common() if n / total >= 0.005)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output folder (zh.jsonl, multi.jsonl are written there)")
    ap.add_argument("--sets", default="zh,multi", help="comma-separated: zh, multi")
    ap.add_argument("--install", action="store_true", help="apt-get install the packages first")
    args = ap.parse_args(argv)
    names = args.sets.split(",")
    for name in names:
        if name not in DOCS:
            ap.error(f"unknown set {name!r} (choose from {', '.join(DOCS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        if args.install:
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", *PACKAGES[name]],
                check=True,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        texts = list(DOCS[name]())
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for text in texts:
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        size = sum(len(t.encode("utf-8")) for t in texts)
        if not texts:
            print(f"{name}: no documents found; are {', '.join(PACKAGES[name])} installed? (--install)")
            continue
        print(f"{name}: {len(texts)} documents, {size / 1e6:.1f} MB; characters: {script_shares(texts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
