"""nowcast: precipitation nowcasting with ConvLSTM / ConvGRU encoder-forecasters.

Reproduces Shi et al. (2015), "Convolutional LSTM Network: A Machine Learning Approach
for Precipitation Nowcasting", with radar preprocessing, persistence and ROVER-style
optical-flow baselines, and the paper's evaluation.
"""

__version__ = "0.1.0"
