"""The package list, found rather than written out: every package under tlsrpt_reporter/, and
the collector, whose folder is collectd/ but whose import name is tlsrpt_collectd (a top-level
package named "collectd" would shadow the collectd monitoring daemon's Python plugin API).
Everything else about the distribution is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["tlsrpt_reporter", "tlsrpt_reporter.*"]), "tlsrpt_collectd"],
    package_dir={"tlsrpt_collectd": "collectd"},
)
