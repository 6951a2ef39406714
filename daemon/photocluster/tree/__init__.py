"""The cluster tree: the link plan (`plan`, pure), generations built and swapped
(`generations`), and the overview rendered into each generation (`overview`)."""

from photocluster.tree.generations import ClusterTree
from photocluster.tree.plan import OVERVIEW, LinkPlan, describe_changes, plan_tree

__all__ = ["OVERVIEW", "ClusterTree", "LinkPlan", "describe_changes", "plan_tree"]
