"""CNN Lab core: data, model, training, run store, attacks and figures. Never imports streamlit."""
