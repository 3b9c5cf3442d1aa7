"""The spam classifier's figures: facteur spam train|score beside bogofilter,
on a held-out split of the SpamAssassin corpus. Prints figures only."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

DEFAULT_THRESHOLD = 0.9  # facteur_policy::bayes::DEFAULT_THRESHOLD
BOGOFILTER_CUTOFF = 0.99  # bogofilter's spam_cutoff
SPEED_MAILS = 3000
SPEED_SIZE = 10 * 1024



def model_size(work, owner):
    """The bytes of a model in the store (`''`: the global one)."""
    import sqlite3
    with sqlite3.connect(os.path.join(work, "facteur.db")) as db:
        return db.execute("SELECT length(model) FROM spam_models WHERE owner = ?", (owner,)).fetchone()[0]

def split(data):
    """(train, test) lists of (path, is_spam); a file is held out for the
    test when the first byte of its name's SHA-256 is below 51 (~20%)."""
    train, test = [], []
    for folder in sorted(os.listdir(data)):
        path = os.path.join(data, folder)
        if not os.path.isdir(path):
            continue
        is_spam = folder.startswith("spam")
        for name in sorted(os.listdir(path)):
            if not name.endswith(".txt"):
                continue
            held_out = hashlib.sha256(f"{folder}/{name}".encode()).digest()[0] < 51
            (test if held_out else train).append((os.path.join(path, name), is_spam))
    return train, test


def link_dir(root, files):
    os.makedirs(root)
    for i, (path, _) in enumerate(files):
        os.symlink(path, os.path.join(root, f"{i:05}.eml"))
    return root


def facteur_scores(bin_, config, files, cpu=None):
    cmd = [bin_, "spam", "score", "--config", config] + files
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    scores = {}
    for line in out.splitlines():
        score, name = line.split(" ", 1)
        scores[name] = float(score)
    return scores


def bogofilter_scores(db, files):
    scores = {}
    for chunk in range(0, len(files), 2000):
        out = subprocess.run(
            ["bogofilter", "-d", db, "-T", "-B"] + files[chunk : chunk + 2000],
            capture_output=True, text=True,
        ).stdout
        for line in out.splitlines():
            name, _, score = line.rsplit(" ", 2)
            scores[name] = float(score)
    return scores


def figures(name, scores, test):
    spam = [scores[p] for p, s in test if s]
    ham = [scores[p] for p, s in test if not s]
    worst_ham = max(ham)
    at_zero_fp = sum(1 for x in spam if x > worst_ham) / len(spam)
    at = []
    for threshold in (DEFAULT_THRESHOLD, BOGOFILTER_CUTOFF):
        caught = sum(1 for x in spam if x >= threshold) / len(spam)
        fp = sum(1 for x in ham if x >= threshold)
        at.append(f"at {threshold}: recall {100 * caught:.2f}%, false positives {fp}/{len(ham)}")
    print(f"{name}: recall at 0 false positives {100 * at_zero_fp:.2f}% "
          f"(highest ham score {worst_ham:.6f}); " + "; ".join(at))


def main():
    data = sys.argv[1]
    bin_ = os.environ["FACTEUR_BIN"]
    train, test = split(data)
    n_spam = sum(1 for _, s in train if s)
    print(f"corpus: train {n_spam} spam + {len(train) - n_spam} ham; "
          f"test {sum(1 for _, s in test if s)} spam + {sum(1 for _, s in test if not s)} ham")
    with tempfile.TemporaryDirectory() as work:
        config = os.path.join(work, "facteur.toml")
        with open(config, "w") as f:
            f.write('[component]\njid = "mail.example.test"\nsecret = "s"\n'
                    '[mail]\ndomains = ["example.test"]\n'
                    f'[store]\nurl = "sqlite://{work}/facteur.db"\n')
        spam_dir = link_dir(os.path.join(work, "train-spam"), [t for t in train if t[1]])
        ham_dir = link_dir(os.path.join(work, "train-ham"), [t for t in train if not t[1]])
        test_files = [p for p, _ in test]

        start = time.monotonic()
        subprocess.run([bin_, "spam", "train", "--config", config, "--spam", spam_dir,
                        "--ham", ham_dir], check=True, capture_output=True)
        facteur_train = time.monotonic() - start
        facteur = facteur_scores(bin_, config, test_files)

        db = os.path.join(work, "bogofilter")
        os.makedirs(db)
        start = time.monotonic()
        for flag, files in (("-s", [p for p, s in train if s]), ("-n", [p for p, s in train if not s])):
            for chunk in range(0, len(files), 2000):
                subprocess.run(["bogofilter", "-d", db, flag, "-B"] + files[chunk : chunk + 2000],
                               check=True)
        bogo_train = time.monotonic() - start
        bogo = bogofilter_scores(db, test_files)

        figures("facteur  ", facteur, test)
        figures("bogofilter", bogo, test)
        print(f"training time: facteur {facteur_train:.2f} s, bogofilter {bogo_train:.2f} s "
              f"({len(train)} mails)")
        bogo_size = sum(os.path.getsize(os.path.join(db, f)) for f in os.listdir(db))
        print(f"model size: facteur {model_size(work, '')} bytes, bogofilter {bogo_size} bytes")

        # A user's own model after 20 feedbacks.
        user_dir = link_dir(os.path.join(work, "user-spam"), [t for t in test if t[1]][:20])
        subprocess.run([bin_, "spam", "train", "--config", config, "--spam", user_dir,
                        "--user", "user@example.test"], check=True, capture_output=True)
        user_size = model_size(work, "user@example.test")
        print(f"a user's own model after 20 spam feedbacks: {user_size} bytes")

        # 10 KB mails: each test mail cut or repeated to 10 KB.
        speed = os.path.join(work, "speed")
        os.makedirs(speed)
        speed_files = []
        for i in range(SPEED_MAILS):
            with open(test[i % len(test)][0], "rb") as f:
                raw = f.read()
            head, sep, body = raw.partition(b"\n\n")
            body = body or b"x"
            body = (body * (SPEED_SIZE // len(body) + 1))[: max(0, SPEED_SIZE - len(head) - 2)]
            path = os.path.join(speed, f"{i:05}.eml")
            with open(path, "wb") as f:
                f.write(head + b"\n\n" + body)
            speed_files.append(path)
        # The process's start and the model's load, timed on one mail, are
        # taken off.
        start = time.monotonic()
        facteur_scores(bin_, config, speed_files[:1], cpu=0)
        fixed = time.monotonic() - start
        start = time.monotonic()
        facteur_scores(bin_, config, speed_files, cpu=0)
        elapsed = time.monotonic() - start - fixed
        start = time.monotonic()
        subprocess.run(["taskset", "-c", "0", "bogofilter", "-d", db, "-T", "-B"] + speed_files,
                       capture_output=True)
        bogo_elapsed = time.monotonic() - start
        print(f"classifications/s on one core, 10 KB mails: facteur {SPEED_MAILS / elapsed:.0f}, "
              f"bogofilter {SPEED_MAILS / bogo_elapsed:.0f}")


if __name__ == "__main__":
    main()
