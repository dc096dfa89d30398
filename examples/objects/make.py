"""A small labelled file of our own for `star run --task FILE` (examples/objects/README.md):
sentences naming an object, labelled with its kind; the test file's objects never appear in
the training file. Run from this folder: python make.py"""

import json
import random

rng = random.Random(7)
nouns = {
    "fruit": "apple banana cherry mango pear plum peach lemon melon grape kiwi apricot",
    "vehicle": "bicycle truck scooter tractor van motorbike bus canoe tram sedan jeep ferry",
    "animal": "badger otter rabbit goat heron lizard fox camel beaver owl donkey ferret",
    "instrument": "violin trumpet cello flute banjo harp drum oboe ukulele tuba clarinet piano",
}
frames = [
    "My neighbour showed me a {} yesterday.",
    "There was a {} near the old station.",
    "She drew a picture of a {} for the class.",
    "We talked about the {} for an hour.",
    "A {} appeared in the photo from the trip.",
    "He keeps a small model of a {} on his desk.",
    "The shop window had a {} in it.",
    "Nobody expected to see a {} at the wedding.",
]
rows = [(f, n, label) for label, ns in nouns.items() for n in ns.split() for f in frames]
rng.shuffle(rows)
held = {label: set(ns.split()[-3:]) for label, ns in nouns.items()}  # test-only objects
parts = {
    "train": [r for r in rows if r[1] not in held[r[2]]][:240],
    "test": [r for r in rows if r[1] in held[r[2]]][:60],
}
for name, part in parts.items():
    with open(f"{name}.jsonl", "w") as f:
        for i, (frame, noun, label) in enumerate(part):
            row = {"id": f"{name}-{i:03d}", "text": frame.format(noun), "label": label}
            f.write(json.dumps(row) + "\n")
