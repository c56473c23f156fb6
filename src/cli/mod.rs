pub mod adc;
