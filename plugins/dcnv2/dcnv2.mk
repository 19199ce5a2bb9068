# Build rules of the AdnetDCNv2 plugin, included by the top-level Makefile.
BUILD     ?= build
DCN_DIR   := plugins/dcnv2
GEN_INC   := $(BUILD)/include
CONTRACT_H := $(GEN_INC)/dcnv2_contract.h

$(CONTRACT_H): $(DCN_DIR)/contract.py
	$(PYTHON_SYS) -m plugins.dcnv2.contract --header $@
