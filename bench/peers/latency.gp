# bench/peers/latency.gp - the round-trip latency of each system (rtt,
# 64-byte payloads): p50, p99 and p99.9 as clustered bars on a log scale.
# report.py runs it with:
#   gnuplot -e "datafile='X.dat'; outfile='X.png'; info='the machine and the date'" latency.gp
set terminal pngcairo size 1100,560 font "DejaVu Sans,10"
set output outfile
if (!exists("info")) info = ""
set title "One job's round trip: enqueue, a worker process runs a no-op, the producer has the result (64-byte payload)\n".info
set ylabel "microseconds (log scale)"
set logscale y
set yrange [0.1:*]
set grid ytics mytics
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -25 nomirror
set key top left
plot datafile using 2:xtic(1) title "p50" lc rgb "#2b6cb0", \
     '' using 3 title "p99" lc rgb "#dd6b20", \
     '' using 4 title "p99.9" lc rgb "#9b2c2c"
