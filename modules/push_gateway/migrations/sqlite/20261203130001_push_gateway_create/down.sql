DROP TABLE push_gateway_devices;
