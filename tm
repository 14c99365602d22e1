
real	0m0.096s
user	0m0.010s
sys	0m0.000s
