"""Suffix automata over token ids, for retrieval drafts (SAM decoding, Hu et al. 2024).

A suffix automaton of a text T has one state per class of substrings that end at the same set
of positions (endpos); it is built online, a token at a time, in amortised O(1) (Blumer et al.
1985). Every state keeps `length` (its longest string), `link` (the state of the longest proper
suffix in another class), its transitions, and `end`: one position where its strings end, kept
as recent as is cheap in O(1): the position that created the state, moved to each new position
where the state is the text's longest repeated suffix (the suffix link of the new state), and
advanced whenever a match walks an occurrence forward (see `Match`). Any valid end position gives a lossless draft; a recent one
is a better guess, since texts repeat their latest pattern.

`Match` follows the longest suffix of a token stream that occurs in the automaton's text:
reading a token takes the transition if there is one, else shortens the match through suffix
links first (amortised O(1): the length grows by at most one per token). For the dynamic
automaton over prompt + generated tokens, the stream is the text itself: each token is matched
against the automaton *before* it is added, so the match is the longest suffix that also ends
earlier, and its continuation `text[end + 1:]` is never empty.

`StaticAutomaton` is a frozen automaton in numpy arrays (transitions in CSR form, sorted by
token), saved as one .npz with the text it indexes: the datastore built once from a corpus.
"""

from __future__ import annotations

import bisect
import os
import tempfile
from pathlib import Path

import numpy as np


class SuffixAutomaton:
    """The dynamic automaton, extended a token at a time."""

    def __init__(self) -> None:
        self.length: list[int] = [0]  # [states] longest string of each state
        self.link: list[int] = [-1]  # [states] suffix link (-1 for the root)
        self.trans: list[dict[int, int]] = [{}]  # [states] token -> state
        self.end: list[int] = [-1]  # [states] a position where the state's strings end
        self.text: list[int] = []  # [n] the tokens added so far
        self.last = 0  # the state of the whole text

    def go(self, state: int, token: int) -> int | None:
        return self.trans[state].get(token)

    def extend(self, token: int) -> None:
        """Add `token` at position len(text)."""
        position = len(self.text)
        self.text.append(token)
        cur = self._new(self.length[self.last] + 1, -1, {}, position)
        p = self.last
        while p != -1 and token not in self.trans[p]:
            self.trans[p][token] = cur
            p = self.link[p]
        if p == -1:
            self.link[cur] = 0
        else:
            q = self.trans[p][token]
            if self.length[p] + 1 == self.length[q]:
                self.link[cur] = q
            else:  # split q: the clone takes the shorter strings, which also end here
                clone = self._new(self.length[p] + 1, self.link[q], dict(self.trans[q]), position)
                while p != -1 and self.trans[p].get(token) == q:
                    self.trans[p][token] = clone
                    p = self.link[p]
                self.link[q] = self.link[cur] = clone
        if self.link[cur] > 0:  # the longest repeated suffix now also ends here: most recent
            self.end[self.link[cur]] = position
        self.last = cur

    def _new(self, length: int, link: int, trans: dict[int, int], end: int) -> int:
        self.length.append(length)
        self.link.append(link)
        self.trans.append(trans)
        self.end.append(end)
        return len(self.length) - 1

    def freeze(self) -> StaticAutomaton:
        """The same automaton in numpy arrays."""
        counts = np.array([len(t) for t in self.trans], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        keys = np.empty(int(offsets[-1]), dtype=np.int32)
        targets = np.empty(int(offsets[-1]), dtype=np.int32)
        for state, moves in enumerate(self.trans):
            ordered = sorted(moves.items())
            a = int(offsets[state])
            keys[a : a + len(ordered)] = [token for token, _ in ordered]
            targets[a : a + len(ordered)] = [target for _, target in ordered]
        return StaticAutomaton(
            np.array(self.length, dtype=np.int32),
            np.array(self.link, dtype=np.int32),
            np.array(self.end, dtype=np.int64),
            offsets,
            keys,
            targets,
            np.array(self.text, dtype=np.int32),
        )


class StaticAutomaton:
    """A frozen automaton: arrays only, read-only, loaded from a datastore file."""

    def __init__(
        self,
        length: np.ndarray,  # [states] int32
        link: np.ndarray,  # [states] int32
        end: np.ndarray,  # [states] int64
        offsets: np.ndarray,  # [states + 1] int64: state s's transitions are [offsets[s], [s+1])
        keys: np.ndarray,  # [transitions] int32 tokens, sorted within each state
        targets: np.ndarray,  # [transitions] int32 states
        text: np.ndarray,  # [n] int32 the indexed tokens
    ) -> None:
        self.length, self.link, self.end = length.tolist(), link.tolist(), end.tolist()
        self.offsets, self.keys, self.targets = offsets, keys, targets
        self._keys = keys.tolist()  # plain lists: bisect on them beats numpy for tiny slices
        self._offsets = offsets.tolist()
        self._targets = targets.tolist()
        self.text = text.tolist()
        self.arrays = (length, link, end, offsets, keys, targets, text)

    def go(self, state: int, token: int) -> int | None:
        lo, hi = self._offsets[state], self._offsets[state + 1]
        i = bisect.bisect_left(self._keys, token, lo, hi)
        return self._targets[i] if i < hi and self._keys[i] == token else None

    def save(self, path: Path, meta: dict[str, str]) -> None:
        """Atomically (temp file + rename), with string metadata (tokenizer, source)."""
        names = ("length", "link", "end", "offsets", "keys", "targets", "text")
        arrays = dict(zip(names, self.arrays, strict=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays, **{f"meta_{k}": np.array(v) for k, v in meta.items()})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: Path) -> tuple[StaticAutomaton, dict[str, str]]:
        with np.load(path, allow_pickle=False) as data:
            names = ("length", "link", "end", "offsets", "keys", "targets", "text")
            automaton = cls(*(data[name] for name in names))
            meta = {k[5:]: str(data[k]) for k in data.files if k.startswith("meta_")}
        return automaton, meta


Automaton = SuffixAutomaton | StaticAutomaton


class Match:
    """The longest suffix of a token stream that occurs in `automaton`'s text, with one end
    position of that occurrence (`end`, -1 when there is no match)."""

    def __init__(self, automaton: Automaton) -> None:
        self.automaton = automaton
        self.state = 0
        self.length = 0
        self.end = -1

    def read(self, token: int) -> None:
        a = self.automaton
        nxt = a.go(self.state, token)
        while nxt is None and self.state != 0:  # shorten: the longest suffix that can continue
            self.state = a.link[self.state]
            self.length = a.length[self.state]
            nxt = a.go(self.state, token)
        if nxt is None:
            self.state, self.length, self.end = 0, 0, -1
            return
        follows = self.end >= 0 and self.end + 1 < len(a.text) and a.text[self.end + 1] == token
        self.end = self.end + 1 if follows else a.end[nxt]  # keep walking the same occurrence
        self.state, self.length = nxt, self.length + 1
        if isinstance(a, SuffixAutomaton) and self.end > a.end[nxt]:
            a.end[nxt] = self.end  # remember the more recent occurrence

    def settle(self) -> None:
        """After the automaton grew (a clone may now hold the shorter strings): move the match
        to the state that holds its length."""
        a = self.automaton
        while self.state != 0 and self.length <= a.length[a.link[self.state]]:
            self.state = a.link[self.state]

    def continuation(self, k: int) -> list[int]:
        """Up to k tokens that followed the matched occurrence."""
        if self.end < 0:
            return []
        return list(self.automaton.text[self.end + 1 : self.end + 1 + k])


class StreamMatcher:
    """Prompt + generated tokens as they arrive: the dynamic automaton over them, its match
    (the longest suffix that also ends earlier), and optionally the match in a static one."""

    def __init__(self, static: StaticAutomaton | None = None) -> None:
        self.automaton = SuffixAutomaton()
        self.match = Match(self.automaton)
        self.static = Match(static) if static is not None else None
        self.seen = 0

    def update(self, tokens: list[int]) -> None:
        for token in tokens[self.seen :]:
            self.match.read(token)  # against the text before this token
            self.automaton.extend(token)
            self.match.settle()
            if self.static is not None:
                self.static.read(token)
        self.seen = len(tokens)

    def best(self) -> Match:
        """The longer match (the dynamic one on a tie: it is this text's own continuation)."""
        if self.static is not None and self.static.length > self.match.length:
            return self.static
        return self.match
