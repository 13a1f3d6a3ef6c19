"""Pipeline files: every error the loader gives names the file, the line (when
there is one), the key and what was expected; a good file loads with its
paths resolved against its own folder."""
from pathlib import Path

import pytest

from softdpu import config
from softdpu.batch import DEFAULT_MAX_FRAME, DEFAULT_SIZE
from softdpu.errors import ConfigError, SoftdpuError

ROOT = Path(__file__).resolve().parent.parent

HEAD = '[pipeline]\nflows = "p.flows"\n'                                 # lines 1-2
PORT1 = '[[port]]\nname = "p1"\nofport = 1\ntype = "pcap"\n'           # 4 lines
PORT2 = '[[port]]\nname = "p2"\nofport = 2\ntype = "pcap"\n'


def write(tmp_path, text, flows=True):
    if flows:
        (tmp_path / "p.flows").write_text("actions=drop\n")
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def error_of(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return path, info.value


def check(err, path, line, key, *expected):
    """The message is `file[:line]: key: message`, and the message says what was expected."""
    msg = str(err)
    assert err.path == str(path)
    assert err.line == line, msg
    assert err.key == key, msg
    where = f"{path}:{line}" if line is not None else f"{path}"
    assert msg.startswith(f"{where}: {key}: "), msg
    for word in expected:
        assert word in msg, f"{word!r} not in {msg!r}"


def test_config_error_is_a_softdpu_error():
    assert issubclass(ConfigError, SoftdpuError)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        config.load(path)
    check(info.value, path, None, "file", "no such pipeline file")


def test_a_directory_is_not_a_pipeline_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path)
    check(info.value, tmp_path, None, "file", "cannot read")


def test_invalid_toml_names_its_line(tmp_path):
    path, err = error_of(tmp_path, HEAD + "batch = \n" + PORT1)
    check(err, path, 3, "toml", "not valid TOML")


def test_invalid_toml_later_in_the_file(tmp_path):
    path, err = error_of(tmp_path, HEAD + PORT1 + "[[port]\nname = 'x'\n")
    check(err, path, 7, "toml", "not valid TOML")


@pytest.mark.parametrize("text, line, key", [
    (HEAD + PORT1 + "[extra]\nx = 1\n", 7, "extra"),
    ("zzz = 1\n" + HEAD + PORT1, 1, "zzz"),
    (HEAD + PORT1 + "[[ports]]\nname = 'p'\n", 7, "ports"),
], ids=["table", "key", "misspelt-array-of-tables"])
def test_unknown_top_level_key(tmp_path, text, line, key):
    path, err = error_of(tmp_path, text)
    check(err, path, line, key, "unknown key", "expected one of: conntrack, esp, firewall, geneve_option, neighbor, pipeline, port")


def test_missing_pipeline_table(tmp_path):
    path, err = error_of(tmp_path, PORT1)
    check(err, path, None, "pipeline", "missing [pipeline] table")


def test_pipeline_that_is_not_a_table(tmp_path):
    path, err = error_of(tmp_path, 'pipeline = 3\n' + PORT1)
    check(err, path, 1, "pipeline", "expected a [pipeline] table", "got 3")


def test_unknown_pipeline_key(tmp_path):
    path, err = error_of(tmp_path, HEAD + "batchsize = 3\n" + PORT1)
    check(err, path, 3, "pipeline.batchsize", "unknown key",
          "batch, flows, mac_aging, mac_table_size, malformed, max_frame, name")


@pytest.mark.parametrize("key, value, expected, got", [
    ("batch", '"256"', "expected packets per batch, 1..65536", "got '256'"),   # a string for an int
    ("batch", "true", "expected packets per batch, 1..65536", "got True"),     # a bool is not an int
    ("batch", "2.5", "expected packets per batch, 1..65536", "got 2.5"),
    ("max_frame", '"1600"', "expected longest frame in bytes, 60..65535", "got '1600'"),
    ("max_frame", "false", "expected longest frame in bytes, 60..65535", "got False"),
    ("name", "3", "expected a pipeline name", "got 3"),
    ("flows", "3", "expected the .flows file", "got 3"),
])
def test_wrong_types_in_pipeline(tmp_path, key, value, expected, got):
    body = HEAD if key != "flows" else "[pipeline]\n"
    path, err = error_of(tmp_path, body + f"{key} = {value}\n" + PORT1)
    check(err, path, 3 if key != "flows" else 2, f"pipeline.{key}", expected, got)


def test_a_quoted_key_still_has_its_line(tmp_path):
    path, err = error_of(tmp_path, HEAD + '"batch" = "x"\n' + PORT1)
    check(err, path, 3, "pipeline.batch", "expected packets per batch")


@pytest.mark.parametrize("key, value, expected", [
    ("batch", 0, "expected 1..65536, got 0"),
    ("batch", 65537, "expected 1..65536, got 65537"),
    ("max_frame", 59, "expected 60..65535, got 59"),
    ("max_frame", 65536, "expected 60..65535, got 65536"),
    ("mac_aging", 0, "expected seconds a learned MAC entry"),
    ("mac_table_size", 0, "expected most MAC entries"),
])
def test_values_out_of_range(tmp_path, key, value, expected):
    path, err = error_of(tmp_path, HEAD + f"# a comment line\n{key} = {value}\n" + PORT1)
    check(err, path, 4, f"pipeline.{key}", expected)


@pytest.mark.parametrize("key, value", [("batch", 1), ("batch", 65536), ("max_frame", 60), ("max_frame", 65535),
                                        ("mac_aging", 1), ("mac_table_size", 1 << 20)])
def test_values_at_the_ends_of_their_range_load(tmp_path, key, value):
    cfg = config.load(write(tmp_path, HEAD + f"{key} = {value}\n" + PORT1))
    assert getattr(cfg, key) == value


def test_missing_flows_key_points_at_the_pipeline_table(tmp_path):
    path, err = error_of(tmp_path, PORT1 + '\n[pipeline]\nname = "x"\n')
    check(err, path, 6, "pipeline.flows", "missing", "expected the .flows file")


def test_flows_file_missing(tmp_path):
    path, err = error_of(tmp_path, '[pipeline]\nname = "x"\nflows = "nope.flows"\n' + PORT1)
    check(err, path, 3, "pipeline.flows", "no such file", str(tmp_path / "nope.flows"))


def test_no_ports(tmp_path):
    path, err = error_of(tmp_path, HEAD)
    check(err, path, None, "port", "expected at least one [[port]] table")


def test_a_port_table_instead_of_an_array_of_tables(tmp_path):
    path, err = error_of(tmp_path, HEAD + '[port]\nname = "p1"\n')
    check(err, path, 3, "port", "expected at least one [[port]] table", "got a [port] table")


def test_a_port_that_is_not_a_table(tmp_path):
    path, err = error_of(tmp_path, "port = [1, 2]\n" + HEAD)
    check(err, path, 1, "port[0]", "expected a [[port]] table", "got 1")


@pytest.mark.parametrize("missing, expected", [
    ("name", "expected a port name"),
    ("ofport", "expected an OpenFlow port number, 1..65279"),
    ("type", "expected a port type"),
])
def test_port_missing_a_required_key(tmp_path, missing, expected):
    lines = [ln for ln in PORT2.splitlines() if not ln.startswith(missing)]
    path, err = error_of(tmp_path, HEAD + PORT1 + "\n".join(lines) + "\n")
    # points at the [[port]] header of the second port (line 7)
    check(err, path, 7, f"port[1].{missing}", "missing", expected)


@pytest.mark.parametrize("key, value, expected", [
    ("name", "1", "expected a port name"),
    ("ofport", '"1"', "expected an OpenFlow port number"),
    ("ofport", "true", "expected an OpenFlow port number"),
    ("ofport", "1.5", "expected an OpenFlow port number"),
    ("type", "3", "expected a port type"),
    ("input", "3", "expected a capture file"),
])
def test_port_wrong_types(tmp_path, key, value, expected):
    port = {"name": '"p1"', "ofport": "1", "type": '"pcap"'}
    port[key] = value
    text = HEAD + "[[port]]\n" + "".join(f"{k} = {v}\n" for k, v in port.items())
    line = 4 + list(port).index(key)
    path, err = error_of(tmp_path, text)
    check(err, path, line, f"port[0].{key}", expected)


@pytest.mark.parametrize("name", ["p 1", "", "-p", "abcdefghijklmnop", "p/1", "é"])
def test_bad_port_name(tmp_path, name):
    path, err = error_of(tmp_path, HEAD + f'[[port]]\nname = "{name}"\nofport = 1\ntype = "pcap"\n')
    check(err, path, 4, "port[0].name", "expected a port name", f"got '{name}'")


@pytest.mark.parametrize("name", ["p1", "eth0.100", "a_b-c", "abcdefghijklmno"])
def test_good_port_names(tmp_path, name):
    cfg = config.load(write(tmp_path, HEAD + f'[[port]]\nname = "{name}"\nofport = 1\ntype = "pcap"\n'))
    assert cfg.ports[0].name == name


@pytest.mark.parametrize("ofport", [0, 65280, 65535, -1])
def test_ofport_out_of_range(tmp_path, ofport):
    path, err = error_of(tmp_path, HEAD + f'[[port]]\nname = "p1"\nofport = {ofport}\ntype = "pcap"\n')
    check(err, path, 5, "port[0].ofport", f"expected 1..65279, got {ofport}")


def test_ofport_top_of_range_loads(tmp_path):
    cfg = config.load(write(tmp_path, HEAD + '[[port]]\nname = "p1"\nofport = 65279\ntype = "pcap"\n'))
    assert cfg.ports[0].ofport == 65279


def test_unknown_port_type(tmp_path):
    path, err = error_of(tmp_path, HEAD + PORT1.replace('"pcap"', '"pcapp"'))
    check(err, path, 6, "port[0].type", "unknown port type 'pcapp'", "expected one of: geneve, pcap, vxlan")


def test_duplicate_port_name(tmp_path):
    path, err = error_of(tmp_path, HEAD + PORT1 + PORT2.replace('"p2"', '"p1"'))
    check(err, path, 8, "port[1].name", "duplicate port name 'p1'", "port[0]")


def test_duplicate_ofport(tmp_path):
    path, err = error_of(tmp_path, HEAD + PORT1 + PORT1.replace('"p1"', '"p3"').replace("= 1", "= 3")
                         + PORT2.replace("= 2", "= 1"))
    check(err, path, 13, "port[2].ofport", "duplicate port number 1", "port[0]")


def test_unknown_key_for_a_pcap_port(tmp_path):
    path, err = error_of(tmp_path, HEAD + PORT1 + PORT2 + 'output = "x.pcap"\n')
    check(err, path, 11, "port[1].output", "unknown key for a pcap port", "input, mac, mtu, name, ofport", "type")


def test_pcap_input_file_missing(tmp_path):
    path, err = error_of(tmp_path, HEAD + PORT1 + 'input = "caps/none.pcap"\n')
    check(err, path, 7, "port[0].input", "no such file", str(tmp_path / "caps" / "none.pcap"))


def test_valid_file_loads_with_paths_relative_to_its_folder(tmp_path, monkeypatch):
    sub = tmp_path / "conf"
    (sub / "caps").mkdir(parents=True)
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "x.flows").write_text("actions=drop\n")
    (sub / "caps" / "in.pcap").write_bytes(b"")
    (sub / "lab.toml").write_text(
        '# a lab\n[pipeline]\nname = "lab"\nflows = "../flows/x.flows"\nbatch = 64\nmax_frame = 9216\n\n'
        '[[port]]\nname = "up"\nofport = 7\ntype = "pcap"\ninput = "caps/in.pcap"\n\n'
        '[[port]]\nname = "down"\nofport = 8\ntype = "pcap"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)   # relative to the pipeline file, not to the working directory
    cfg = config.load(Path("..") / "conf" / "lab.toml")
    assert cfg.name == "lab"
    assert cfg.flows == (tmp_path / "flows" / "x.flows").resolve()
    assert cfg.batch == 64 and cfg.max_frame == 9216
    assert [(p.name, p.ofport, p.type) for p in cfg.ports] == [("up", 7, "pcap"), ("down", 8, "pcap")]
    assert cfg.ports[0].options["input"] == (sub / "caps" / "in.pcap").resolve()
    assert "input" not in cfg.ports[1].options
    assert cfg.port("down").ofport == 8
    with pytest.raises(KeyError):
        cfg.port("nope")


def test_defaults(tmp_path):
    cfg = config.load(write(tmp_path, HEAD + PORT1))
    assert cfg.name == "p"          # the file's stem
    assert cfg.batch == DEFAULT_SIZE and cfg.max_frame == DEFAULT_MAX_FRAME
    assert cfg.flows == (tmp_path / "p.flows").resolve()


SHIPPED = sorted((ROOT / "pipelines").glob("*.toml"))


def test_there_are_shipped_pipelines():
    assert any(p.stem == "l2-passthrough" for p in SHIPPED)


@pytest.mark.parametrize("pipeline", SHIPPED, ids=lambda p: p.stem)
def test_shipped_pipelines_load(pipeline):
    cfg = config.load(pipeline)
    assert cfg.ports and cfg.flows.is_file()
    for p in cfg.ports:
        if "input" in p.options:
            assert p.options["input"].is_file()


def test_pipeline_name_must_be_a_safe_folder_name(tmp_path):
    from softdpu import config
    from softdpu.errors import ConfigError

    (tmp_path / "p.flows").write_text("actions=drop\n")
    for bad in ("../x", "a/b", "", ".hidden"):
        (tmp_path / "p.toml").write_text(f'[pipeline]\nname = "{bad}"\nflows = "p.flows"\n'
                                         '[[port]]\nname = "a"\nofport = 1\ntype = "pcap"\n')
        with pytest.raises(ConfigError) as e:
            config.load(tmp_path / "p.toml")
        assert "p.toml:2: pipeline.name" in str(e.value)
