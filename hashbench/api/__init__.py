"""The plugin contracts: what a method, backbone, dataset, attack or defense implements and gets."""
