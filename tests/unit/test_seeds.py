from quantscan.seeds import derive_seed


def test_same_keys_same_seed_and_range():
    a = derive_seed(42, "simulate", "constant", "sweep", 0, 3)
    assert a == derive_seed(42, "simulate", "constant", "sweep", 0, 3)
    assert 1 <= a < 2**32


def test_any_key_or_master_changes_the_seed():
    base = derive_seed(42, "simulate", "constant", "sweep", 0, 3)
    others = {
        derive_seed(43, "simulate", "constant", "sweep", 0, 3),
        derive_seed(42, "simulate", "constant", "neutral", 0, 3),
        derive_seed(42, "simulate", "constant", "sweep", 1, 3),
        derive_seed(42, "simulate", "constant", "sweep", 0, 4),
        # key boundaries matter: ("ab", "c") is not ("a", "bc")
        derive_seed(42, "simulate", "constan", "tsweep", 0, 3),
    }
    assert base not in others and len(others) == 5


def test_atomic_outputs_get_umask_permissions(tmp_path):
    import os

    from quantscan.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
