"""What a CNN course computes about a network: receptive fields, layer tables, weight counts, pictures.

    from medconv.analysis import layer_table, receptive_fields, empirical_receptive_field
    layer_table(model, (3, 224, 224), depth=1).to_rich()
"""
from .empirical import empirical_gradient_map, empirical_receptive_field
from .fc_vs_conv import fc_vs_conv
from .layers import LayerRow, LayerTable, human, layer_table
from .pictures import plot_filters, plot_receptive_field
from .receptive_field import (
                              ReceptiveField,
                              Trace,
                              analytic_extent,
                              last_spatial_layer,
                              receptive_fields,
                              trace_network,
)

__all__ = ["LayerRow", "LayerTable", "ReceptiveField", "Trace", "analytic_extent", "empirical_gradient_map",
           "empirical_receptive_field", "fc_vs_conv", "human", "last_spatial_layer", "layer_table",
           "plot_filters", "plot_receptive_field", "receptive_fields", "trace_network"]
