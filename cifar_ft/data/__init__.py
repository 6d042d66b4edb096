"""Data modules (CIFAR-10/100, image folders, synthetic), their splits, samplers and the batched
device-side transforms. Images stay uint8 until they reach the training device."""
