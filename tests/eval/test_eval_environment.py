from liccodec.eval.environment import cpu_model

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC

processor\t: 1
cpu family\t: 23
model\t\t: 1
model name\t: Other
"""


def test_cpu_model_names_family_and_model_of_the_first_processor():
    assert cpu_model(CPUINFO) == "AMD EPYC (family 25, model 17)"


def test_cpu_model_without_family_keeps_the_name():
    assert cpu_model("model name\t: Apple M2\n") == "Apple M2"
