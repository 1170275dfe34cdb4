terraform {
  # No provider: this module only computes values, so `tofu init`, `tofu
  # validate` and `tofu test` run offline.
  required_version = ">= 1.6.0"
}
