"""`generate --show-tree N`: the candidate tree each of the first N tree steps verified, drawn
with rich. Reads the TreeTrace of each step; computes nothing beyond walking the recorded tree.

Marks (readable without colour): `✓` accepted (bold), `✗` tested by the target and rejected,
`·` never reached (its parent was rejected), `+` the target's own token after the accepted
path (bonus or recovered). Each node names its draft source when a tree mixes sources; a tree
with one source names it in the step's heading.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from rich.tree import Tree

from decbench.cli.render import piece
from decbench.results import GenerationResult, StepTrace, TreeTrace

ACCEPTED = ("✓", "bold green")
REJECTED = ("✗", "red")
UNREACHED = ("·", "dim")
BONUS_STYLE = "bold"
FULL_TREE_NODES = 40  # larger trees show only the accepted path and the candidates it tested


def shown(tokenizer, token: int) -> str:
    """A token's text on one line, quoted so that spaces show."""
    return repr(piece(tokenizer, token))


def acceptance_trees(result: GenerationResult, tokenizer, limit: int) -> Group:
    """One rich Tree for each of the first `limit` steps that verified a non-empty tree."""
    trees: list[Tree | Text] = []
    position = 0
    for number, step in enumerate(result.steps, start=1):
        root_token = result.token_ids[position - 1] if position else None
        position += step.emitted
        if step.tree is None or not step.tree.tokens:
            continue
        trees.append(step_tree(number, step, root_token, tokenizer))
        if len(trees) == limit:
            break
    if not trees:
        trees.append(Text(f"method '{result.method}' verified no candidate trees", style="dim"))
    return Group(tree_legend(), *trees)


def step_tree(number: int, step: StepTrace, root_token: int | None, tokenizer) -> Tree:
    trace = step.tree
    assert trace is not None
    sources = sorted(set(trace.sources))
    mixed = len(sources) > 1
    heading = Text(f"step {number}", style="bold")
    after = shown(tokenizer, root_token) if root_token is not None else "?"
    count = len(trace.tokens)
    heading.append(f" after {after} · {count} candidate{'' if count == 1 else 's'}")
    if sources and not mixed:
        heading.append(f" ({sources[0]})")
    heading.append(f" · {len(trace.accepted_path)} accepted", style="dim")
    root = Tree(heading, guide_style="dim")
    kids = children(trace)
    on_path = set(trace.accepted_path)
    tested = {-1, *trace.accepted_path}  # nodes whose children the target compared
    compact = len(trace.tokens) > FULL_TREE_NODES
    last = trace.accepted_path[-1] if trace.accepted_path else -1

    def grow(branch: Tree, node: int) -> None:
        hidden = 0
        for child in kids[node + 1]:
            if compact and node not in tested:
                hidden += 1 + count_below(kids, child)
                continue
            if child in on_path:
                mark, style = ACCEPTED
            elif node in tested:
                mark, style = REJECTED
            else:
                mark, style = UNREACHED
            label = Text(f"{mark} {shown(tokenizer, trace.tokens[child])}", style=style)
            if mixed:
                label.append(f"  [{trace.sources[child]}]", style="dim")
            grow(branch.add(label), child)
        if node == last:
            kind = "recovered" if step.recovered else "bonus"
            branch.add(Text(f"+ {shown(tokenizer, step.bonus)} ({kind})", style=BONUS_STYLE))
        if hidden:
            branch.add(Text(f"… {hidden} more untested", style="dim"))

    grow(root, -1)
    return root


def children(trace: TreeTrace) -> list[list[int]]:
    """[1 + n] children of the root (index 0) and of each node (index 1 + node)."""
    out: list[list[int]] = [[] for _ in range(len(trace.tokens) + 1)]
    for node, parent in enumerate(trace.parents):
        out[parent + 1].append(node)
    return out


def count_below(kids: list[list[int]], node: int) -> int:
    return sum(1 + count_below(kids, child) for child in kids[node + 1])


def tree_legend() -> Text:
    return Text.assemble(
        ("✓ accepted", ACCEPTED[1]),
        " · ",
        ("✗ rejected", REJECTED[1]),
        " · ",
        ("· not reached", UNREACHED[1]),
        " · ",
        ("+ target token", BONUS_STYLE),
    )
