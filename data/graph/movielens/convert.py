"""Convert MovieLens ``ml-latest-small`` (GroupLens, 2018) into a heterogeneous Gremlin CSV export.

    python data/graph/movielens/convert.py <folder with ratings.csv movies.csv tags.csv> data/graph/movielens

Writes ``nodes.csv`` and ``edges.csv`` in the Gremlin (Neptune bulk-load) format that
``sagelab.tasks.graph.hetero_graph.read_hetero_csv`` reads, with four vertex labels and three edge labels:

* ``user`` (``u<userId>``, no properties: MovieLens publishes none);
* ``movie`` (``m<movieId>``): ``name`` = the title, ``year`` = the release year in its trailing ``(YYYY)`` (empty
  where the title has none), ``genre`` = the FIRST-listed genre of its ``genres`` field (the single-label target of
  node classification; MovieLens lists genres alphabetically, so this is the alphabetically first one; empty for
  ``(no genres listed)``);
* ``genre`` (``g:<Genre>``) and ``tag`` (``t:<tag>``, lower-cased and stripped; tags that differ only in case are one
  node): ``name``;
* edges ``user -rated-> movie`` (one per rating, ``rating:Double`` kept), ``movie -has_genre-> genre`` (every listed
  genre), ``movie -has_tag-> tag`` (one per distinct movie-tag pair; who tagged and when are dropped).

Timestamps and ``links.csv`` are not used. Deterministic: nodes and edges in the order of the source files.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

NO_GENRE = "(no genres listed)"
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def convert(source: Path, out: Path) -> dict[str, int]:
    """Read the three source files under ``source`` and write ``out/nodes.csv`` + ``out/edges.csv``; returns counts."""
    movies, ratings, tags = (_rows(source / f"{name}.csv") for name in ("movies", "ratings", "tags"))
    nodes: list[list[str]] = []
    genres: dict[str, None] = {}
    for movie in movies:
        listed = [g for g in movie["genres"].split("|") if g and g != NO_GENRE]
        genres.update(dict.fromkeys(listed))
        year = _YEAR.search(movie["title"])
        nodes.append([f"m{movie['movieId']}", "movie", movie["title"].strip(), year.group(1) if year else "",
                      listed[0] if listed else ""])
    users = dict.fromkeys(r["userId"] for r in ratings)
    users.update(dict.fromkeys(t["userId"] for t in tags))
    nodes += [[f"u{u}", "user", "", "", ""] for u in users]
    nodes += [[f"g:{g}", "genre", g, "", ""] for g in genres]
    tag_names = dict.fromkeys(t["tag"].strip().lower() for t in tags if t["tag"].strip())
    nodes += [[f"t:{t}", "tag", t, "", ""] for t in tag_names]

    edges: list[list[str]] = [[f"u{r['userId']}", f"m{r['movieId']}", "rated", r["rating"]] for r in ratings]
    for movie in movies:
        edges += [[f"m{movie['movieId']}", f"g:{g}", "has_genre", ""]
                  for g in movie["genres"].split("|") if g and g != NO_GENRE]
    pairs = dict.fromkeys((t["movieId"], t["tag"].strip().lower()) for t in tags if t["tag"].strip())
    edges += [[f"m{m}", f"t:{t}", "has_tag", ""] for m, t in pairs]

    out.mkdir(parents=True, exist_ok=True)
    with (out / "nodes.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["~id", "~label", "name:String", "year:Int", "genre:String"])
        writer.writerows(nodes)
    with (out / "edges.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["~from", "~to", "~label", "rating:Double"])
        writer.writerows(edges)
    return {"movies": len(movies), "users": len(users), "genres": len(genres), "tags": len(tag_names),
            "rated": len(ratings), "has_genre": sum(1 for e in edges if e[2] == "has_genre"), "has_tag": len(pairs)}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python data/graph/movielens/convert.py <ml-latest-small folder> <output folder>")
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])))
