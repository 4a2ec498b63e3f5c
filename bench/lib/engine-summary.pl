#!/usr/bin/env perl
# The summary of bench/engine.sh: reads bench/results/engine/ and prints the
# per-case table and the table of bars.  Nothing here is tuned: every figure
# is computed from the counters the script saved.
#
#   engine-summary.pl RUN DUR CLK_TCK

use strict;
use warnings;
use JSON::PP;

my ($run, $dur, $hz) = @ARGV;
my $json = JSON::PP->new;

sub slurp { my $f = shift; open my $fh, '<', $f or return undef; local $/; my $t = <$fh>; $t }
sub jfile { my $t = slurp(shift); defined $t && length $t ? eval { $json->decode($t) } : undef }

# a snapshot: time, worker, sink and wrk CPU ticks, machine busy ticks, JSONs
sub snap {
    my ($f) = @_;
    my $l = slurp($f) // return undef;
    my ($t, $w, $s, $k, $b) = split ' ', $l;
    my $st = jfile("$f.json");
    my ($req) = (slurp("$f.stub") // '') =~ /^\s*\d+\s+\d+\s+(\d+)/m;
    my ($sink) = (slurp("$f.sink") // '') =~ /^\s*\d+\s+\d+\s+(\d+)/m;
    return { t => $t, w => $w, s => $s, k => $k, b => $b, st => $st,
             req => $req // 0, sink => $sink // 0 };
}

sub sum_pushes {   # outcome -> over platforms
    my ($st, $o) = @_;
    return 0 unless $st && $st->{pushes};
    my $n = 0;
    $n += $_->{$o} // 0 for values %{ $st->{pushes} };
    return $n;
}

sub to_ms {
    my $v = shift // return undef;
    my ($n) = $v =~ /^([\d.]+)/ or return undef;
    return $v =~ /us$/ ? $n / 1000 : $v =~ /ms$/ ? $n : $v =~ /s$/ ? $n * 1000 : $n;
}

sub wrk {
    my $t = slurp(shift) // '';
    my %w;
    ($w{rps}) = $t =~ /^Requests\/sec:\s+([\d.]+)/m;
    ($w{reqs}) = $t =~ /^\s*(\d+) requests in/m;
    my ($p50) = $t =~ /^\s+50%\s+(\S+)/m;
    my ($p99) = $t =~ /^\s+99%\s+(\S+)/m;
    $w{p50} = to_ms($p50);
    $w{p99} = to_ms($p99);
    ($w{non2xx}) = $t =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    $w{non2xx} //= 0;
    if ($t =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/) {
        $w{errs} = $1 + $2 + $3 + $4;
        $w{timeouts} = $4;
    }
    $w{errs} //= 0;
    return \%w;
}

sub mean { my @x = @_; return @x ? (eval { my $s = 0; $s += $_ for @x; $s }) / @x : 0 }
sub max_of { my $m; for (@_) { $m = $_ if !defined $m || $_ > $m } $m }

# --- the wrk cases -----------------------------------------------------------

my (%c, @order, @warn, @loud);
if (open my $fh, '<', "$run/results.tsv") {
    while (<$fh>) {
        chomp;
        my ($name, $per, $conns, $ppr, $prefix) = split /\t/;
        my $a = snap("$run/snap/$name.a") or next;
        my $b = snap("$run/snap/$name.b") or next;
        my $x = { name => $name, per => $per, conns => $conns, ppr => $ppr,
                  wall => $b->{t} - $a->{t},
                  cpu => ($b->{w} - $a->{w}) / $hz, scpu => ($b->{s} - $a->{s}) / $hz,
                  kcpu => ($b->{k} - $a->{k}) / $hz, busy => ($b->{b} - $a->{b}) / $hz,
                  sinkreq => $b->{sink} - $a->{sink} - 1, wrk => wrk("$run/wrk/$name.txt") };
        $x->{other} = $x->{busy} - $x->{cpu} - $x->{scpu} - $x->{kcpu};
        my ($sa, $sb) = ($a->{st}, $b->{st});
        if ($ppr) {
            $x->{pushes} = sum_pushes($sb, 'sent') - sum_pushes($sa, 'sent');
            $x->{units} = $x->{pushes};
            $x->{failed} = sum_pushes($sb, 'failed') - sum_pushes($sa, 'failed');
            $x->{rejected} = sum_pushes($sb, 'rejected') - sum_pushes($sa, 'rejected');
            $x->{retries} = ($sb->{retries} // 0) - ($sa->{retries} // 0);
            $x->{dups} = sum_pushes($sb, 'duplicate') - sum_pushes($sa, 'duplicate');
            $x->{deliv} = ($sb->{requests}{dispatched} // 0) - ($sa->{requests}{dispatched} // 0);
        } elsif ($name eq 'edge') {                  # the edge: requests checked
            $x->{units} = ($sb->{requests}{checked} // 0) - ($sa->{requests}{checked} // 0);
            $x->{deliv} = $x->{units};
        } else {                                     # return 200: stub_status, less its own request
            $x->{units} = $b->{req} - $a->{req} - 1;
            $x->{deliv} = $x->{units};
        }
        if ($sa && $sb && $sb->{requests}) {
            for my $k (sort keys %{ $sb->{requests} }) {
                next if $k =~ /^(dispatched|accepted|checked)$/;
                my $d = $sb->{requests}{$k} - ($sa->{requests}{$k} // 0);
                $x->{bad}{$k} = $d if $d;
            }
        }
        $x->{us} = $x->{units} ? 1e6 * $x->{cpu} / $x->{units} : 0;
        my @d;
        if (open my $dh, '<', "$run/snap/$name.depth") {
            while (<$dh>) { next if /^#/; my @f = split; push @d, [@f] if @f == 3 }
        }
        if (@d) {
            $x->{qd_mean} = mean(map { $_->[0] } @d);
            $x->{qd_max} = max_of(map { $_->[0] } @d);
            $x->{if_mean} = mean(map { $_->[1] } @d);
            $x->{hc_max} = max_of(map { $_->[2] } @d);
            $x->{samples} = scalar @d;
        }
        $c{$name} = $x;
        push @order, $name;
        my $w = $x->{wrk};
        push @loud, "$name: $x->{dups} pushes skipped as duplicates (event ids not distinct?)" if $x->{dups};
        if ($w->{non2xx} || $w->{errs} || $x->{bad} || ($x->{failed} // 0) || ($x->{rejected} // 0)) {
            push @loud, sprintf('%s: %d non-2xx answers, %d socket errors (%d timeouts) in wrk;'
                . ' in the window: %s; pushes failed %d, rejected %d', $name, $w->{non2xx}, $w->{errs},
                $w->{timeouts} // 0,
                ($x->{bad} ? join(', ', map { "$_ $x->{bad}{$_}" } sort keys %{ $x->{bad} }) : 'no refused request'),
                $x->{failed} // 0, $x->{rejected} // 0);
        }
        push @warn, $name if $x->{wall} > 0 && $x->{other} / $x->{wall} > 0.2;
    }
}

my %label = (
    base => 'return 200 (8-event bodies)',
    (map { ("depth$_" => "depth $_: 8 ev x 8 recip, h1") } 8, 64, 512, 4096),
    (map { ("h2depth$_" => "depth $_: 8 ev x 8 recip, h2") } 64, 512),
    size1 => 'size: 1 event, h1',
    size50 => 'size: 50 events, h1',
    size500 => 'size: 500 events, h1',
    single8 => 'single event, c=8, h1',
    h2single8 => 'single event, c=8, h2',
    edge => 'edge only (no hub), 1 event',
);

print "\nEngine benchmark: 1 module worker (CPU 1), wrk -t1 (CPU 0), ${dur}s windows, loopback TLS sink\n";
print slurp("$run/build.txt") // '';
if (@order) {
    printf "%-29s %5s %7s %8s %7s %7s %6s %12s %6s %5s %4s %4s %4s %5s %8s %8s\n",
        'case', 'conns', 'deliv/s', 'pushes/s', 'p50 ms', 'p99 ms', 'non2xx', 'qdepth mn/mx',
        'inflt', 'hconn', 'wkr%', 'snk%', 'wrk%', 'othr%', 'us/push', 'cpu/base';
    my $base = $c{base};
    for my $n (@order) {
        my $x = $c{$n};
        my $w = $x->{wrk};
        printf "%-29s %5d %7.0f %8s %7.2f %7.2f %6d %12s %6s %5s %4.0f %4.0f %4.0f %5.0f %8.1f %8s\n",
            $label{$n} // $n, $x->{conns}, $x->{deliv} / $x->{wall},
            ($x->{ppr} ? sprintf('%.0f', $x->{pushes} / $x->{wall}) : '-'),
            $w->{p50} // 0, $w->{p99} // 0, $w->{non2xx} + $w->{errs},
            (defined $x->{qd_mean} ? sprintf('%.0f/%d', $x->{qd_mean}, $x->{qd_max}) : '-'),
            (defined $x->{if_mean} ? sprintf('%.0f', $x->{if_mean}) : '-'),
            (defined $x->{hc_max} ? $x->{hc_max} : '-'),
            100 * $x->{cpu} / $x->{wall}, 100 * $x->{scpu} / $x->{wall}, 100 * $x->{kcpu} / $x->{wall},
            100 * ($x->{other} > 0 ? $x->{other} : 0) / $x->{wall}, $x->{us},
            ($base && $base->{us} && $n ne 'edge' ? sprintf('%.2f', $x->{us} * ($x->{ppr} || 1) / $base->{us})
                                                  : '-');
    }
    print "  us/push: worker CPU per push sent (per request for return 200 and the edge); cpu/base: worker\n"
        . "  CPU per delivery / return 200's per request; qdepth: status queue_depth sampled every 200 ms.\n";
    for my $n (@order) {
        my $x = $c{$n};
        next unless $x->{ppr};
        my $expect = $x->{pushes};
        if ($x->{sinkreq} > $expect * 1.02 + 50 || $x->{retries}) {
            printf "  %s: the sink counted %d requests for %d pushes sent, %d retries\n",
                $n, $x->{sinkreq}, $expect, $x->{retries};
        }
    }
}

# --- the floor -------------------------------------------------------------------

my %f;
if (open my $ff, '<', "$run/floor.tsv") {
    while (<$ff>) {
        chomp;
        my ($name, $n, $cpu, $wall, $failed) = split /\t/;
        $f{$name} = { n => $n, cpu => $cpu, wall => $wall, failed => $failed,
                      us => $n ? 1e6 * $cpu / $n : 0 } if $n;
    }
    for my $k (qw(floor1 floor2)) {
        my $x = $f{$k} or next;
        printf "libcurl floor %s: %.0f transfers/s, %.1f us CPU per transfer%s\n",
            ($k eq 'floor1' ? 'HTTP/1.1' : 'HTTP/2  '), $x->{n} / $x->{wall}, $x->{us},
            ($x->{failed} ? " ($x->{failed} FAILED)" : '');
    }
}

# --- the other cases ---------------------------------------------------------------

my $calls_alone = jfile("$run/load/calls-alone.json");
my $calls_back = jfile("$run/load/calls-backlog.json");
my %callcpu;
for my $n (qw(alone backlog)) {
    my $a = snap("$run/snap/calls-$n.a") or next;
    my $b = snap("$run/snap/calls-$n.b") or next;
    my $wall = $b->{t} - $a->{t};
    $callcpu{$n} = { wkr => ($b->{w} - $a->{w}) / $hz / $wall,
                     other => (($b->{b} - $a->{b}) - ($b->{w} - $a->{w}) - ($b->{s} - $a->{s})) / $hz / $wall };
    push @warn, "calls-$n (the Python client included)" if $callcpu{$n}{other} > 0.2 + 0.15;
}
if ($calls_alone && $calls_back) {
    for my $p ([ alone => $calls_alone ], [ 'behind backlog' => $calls_back ]) {
        my ($n, $j) = @{$p};
        my $cc = $callcpu{$n eq 'alone' ? 'alone' : 'backlog'};
        printf "calls %-14s %4d calls, statuses %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms%s\n", $n,
            $j->{calls}, join(' ', map { "$_:$j->{statuses}{$_}" } sort keys %{ $j->{statuses} }),
            $j->{p50}, $j->{p99}, $j->{max},
            ($cc ? sprintf('  (worker %.0f%%, others %.0f%% of a CPU)', 100 * $cc->{wkr}, 100 * $cc->{other}) : '');
        push @loud, "calls $n: non-200 answers: " . $json->encode($j->{statuses})
            if grep { $_ ne '200' } keys %{ $j->{statuses} };
    }
    my @b = grep { defined $_->{ms} } @{ $calls_back->{backlog} };
    if (@b) {
        my %st;
        $st{$_->{status}}++ for @b;
        printf "chat backlog: %d deliveries of 5,000 events (one at a time), statuses %s, answered in"
             . " mean %.0f ms, min %.0f, max %.0f\n", scalar @b,
            join(' ', map { "$_:$st{$_}" } sort keys %st), mean(map { $_->{ms} } @b),
            (sort { $a <=> $b } map { $_->{ms} } @b)[0], max_of(map { $_->{ms} } @b);
        push @loud, "chat backlog: non-200 answers: " . join(' ', map { "$_:$st{$_}" } sort keys %st)
            if grep { $_ ne '200' } keys %st;
    }
}

# load/rss.txt: "idle LABEL vmrss anon", "queued LABEL vmrss anon qd inflight secs", "statuses LABEL s:n ..."
my (%rss, %rss_n);
my %rss_ppd = (dev1 => 500, dev16 => 2000);   # pushes per delivery
if (open my $rh, '<', "$run/load/rss.txt") {
    while (<$rh>) {
        chomp;
        my ($k, $label, @v) = split ' ';
        $rss{$label}{$k} = \@v;
    }
}
for my $label (qw(dev1 dev16)) {
    my $r = $rss{$label} or next;
    next unless $r->{idle} && $r->{queued};
    my @s = map { [split /:/] } @{ $r->{statuses} // [] };
    my $n = 0;
    $n += $rss_ppd{$label} * $_->[1] for grep { $_->[0] == 202 } @s;
    $rss_n{$label} = $n;
    my $ndeliv = 0;
    $ndeliv += $_->[1] for @s;
    my ($vi, $ai) = @{ $r->{idle} };
    my ($vq, $aq, $qd, $if, $secs) = @{ $r->{queued} };
    printf "rss %-5s %d deliveries of %d pushes (%s) answered %s; queue_depth %d (in_flight %d), %s s after"
         . " the first; VmRSS %d -> %d kB, RssAnon %d -> %d kB\n", $label, $ndeliv,
        $rss_ppd{$label}, ($label eq 'dev1' ? '500 events x 1 device' : '125 events x 16 devices'),
        join(' ', map { "$_->[0]:$_->[1]" } @s), $qd, $if, $secs, $vi, $vq, $ai, $aq;
    push @loud, "rss $label: deliveries not all 202: " . join(' ', map { "$_->[0]:$_->[1]" } @s)
        if grep { $_->[0] != 202 } @s;
}

my $down_probe = jfile("$run/load/down-probe.json");
my ($down_st, $down_s) = split ' ', (slurp("$run/load/down-post.txt") // '');
my $down_log = slurp("$run/load/down-error.log") // '';
my $down_size = slurp("$run/load/down-size.txt");
my $down_status = jfile("$run/load/down-status.json");
my ($down_ac, $down_log_all);
if (defined $down_st) {
    $down_log_all = slurp("$run/down/logs/error.log") // '';
    $down_ac = () = $down_log_all =~ /\[(alert|crit)\]/g;
    my $att = () = $down_log =~ /no connection to Notification Hubs/g;
    my %reasons;
    $reasons{$1}++ while $down_log =~ /\[(?:warn|error)\] \d+#\d+: (?:\*\d+ )?acs_notify: ([a-z ]{6,40})/g;
    printf "down: a delivery of %.2f MB, 2,500 events x 16 devices = 40,000 pushes: answered %s in %.2f s;"
         . " %d lane pauses logged; pushes failed %d\n", ($down_size // 0) / 1e6, $down_st, $down_s, $att,
        sum_pushes($down_status, 'failed');
    printf "  probe: %d probes every 10-20 ms, p50 %.2f ms, p99 %.2f ms, max %.2f ms (%.1f s into the run),"
         . " %d failed; VmRSS %d -> peak %d -> %d kB (RssAnon peak %d)\n",
        $down_probe->{probes}, $down_probe->{p50}, $down_probe->{p99}, $down_probe->{max},
        $down_probe->{max_at_s} // 0, $down_probe->{bad}, $down_probe->{rss0}[0], $down_probe->{rss_peak}[0],
        $down_probe->{rss_end}[0], $down_probe->{rss_peak}[1] if $down_probe;
}

# --- the bars ------------------------------------------------------------------------

my @bars;   # [figure, value, baseline, ratio, bar, verdict]
my $fmt_us = sub { sprintf '%.1f us', shift };
sub verdict { my ($ok) = @_; defined $ok ? ($ok ? 'PASS' : 'FAIL') : 'n/a' }

if (my $b8 = $c{depth8}) {
    for my $d (64, 512, 4096) {
        my $x = $c{"depth$d"} or next;
        my $r = $x->{us} / $b8->{us};
        push @bars, [ sprintf('1 CPU/push at depth %d (qd %.0f/%d)', $d, $x->{qd_mean} // 0, $x->{qd_max} // 0),
                      $fmt_us->($x->{us}),
                      sprintf('%.1f us at 8 (qd %.0f/%d)', $b8->{us}, $b8->{qd_mean} // 0, $b8->{qd_max} // 0),
                      sprintf('%.2f', $r), $d == 4096 ? '<= 1.25' : '-',
                      $d == 4096 ? verdict($r <= 1.25) : 'info' ];
    }
}
if (my $s1 = $c{size1}) {
    for my $n (50, 500) {
        my $x = $c{"size$n"} or next;
        my $r = $x->{us} / $s1->{us};
        push @bars, [ "2 CPU/event, $n-event deliveries", $fmt_us->($x->{us}),
                      sprintf('%.1f us, 1-event', $s1->{us}), sprintf('%.2f', $r),
                      $n == 50 ? '<= 1.2' : '-', $n == 50 ? verdict($r <= 1.2) : 'info' ];
    }
}
for my $d (64, 512) {
    my $h1 = $c{"depth$d"} or next;
    my $h2 = $c{"h2depth$d"} or next;
    push @bars, [ "3 CPU/push h2 vs h1, depth $d", $fmt_us->($h2->{us}), sprintf('%.1f us h1', $h1->{us}),
                  sprintf('%.2f', $h2->{us} / $h1->{us}), '-', 'info' ];
    push @bars, [ "3 latency p50/p99 h2 vs h1, depth $d",
                  sprintf('%.1f/%.1f ms', $h2->{wrk}{p50}, $h2->{wrk}{p99}),
                  sprintf('%.1f/%.1f ms h1', $h1->{wrk}{p50}, $h1->{wrk}{p99}),
                  sprintf('%.2f/%.2f', $h2->{wrk}{p50} / ($h1->{wrk}{p50} || 1), $h2->{wrk}{p99} / ($h1->{wrk}{p99} || 1)),
                  '-', 'info' ];
}
if ($c{single8} && $c{edge} && $f{floor1}) {
    my $m = $c{single8}{us};
    my $den = $f{floor1}{us} + $c{edge}{us};
    push @bars, [ '4 module h1 / (floor h1 + edge)', $fmt_us->($m),
                  sprintf('%.1f + %.1f us', $f{floor1}{us}, $c{edge}{us}), sprintf('%.2f', $m / $den),
                  '<= 1.5', verdict($m / $den <= 1.5) ];
    if ($c{h2single8} && $f{floor2}) {
        my $m2 = $c{h2single8}{us};
        my $d2 = $f{floor2}{us} + $c{edge}{us};
        push @bars, [ '4 module h2 / (floor h2 + edge)', $fmt_us->($m2),
                      sprintf('%.1f + %.1f us', $f{floor2}{us}, $c{edge}{us}), sprintf('%.2f', $m2 / $d2),
                      '-', 'info' ];
    }
}
for my $label (qw(dev1 dev16)) {
    my $r = $rss{$label} or next;
    next unless $r->{idle} && $r->{queued};
    my ($vi, $ai) = @{ $r->{idle} };
    my ($vq, $aq, $qd) = @{ $r->{queued} };
    my $what = $label eq 'dev1' ? '1 device/event' : '16 devices/event';
    push @bars, [ "5 VmRSS per queued push, $what", sprintf('%.0f B', 1024 * ($vq - $vi) / ($qd || 1)),
                  sprintf('%.1f MB idle', $vi / 1024), '-', '-', 'info' ];
    push @bars, [ "5 RssAnon per queued push, $what", sprintf('%.0f B', 1024 * ($aq - $ai) / ($qd || 1)),
                  sprintf('%.1f MB idle', $ai / 1024), '-', '-', 'info' ];
    push @bars, [ "5 queue_depth = queued, $what", $qd, $rss_n{$label}, '-', '=',
                  verdict($qd == $rss_n{$label}) ];
}
if ($calls_alone && $calls_back) {
    push @bars, [ '6 call p99 behind a 5,000-event backlog', sprintf('%.1f ms', $calls_back->{p99}),
                  sprintf('%.1f ms alone', $calls_alone->{p99}),
                  sprintf('%.2f', $calls_back->{p99} / ($calls_alone->{p99} || 1)), '<= 50 ms',
                  verdict($calls_back->{p99} <= 50) ];
}
if (defined $down_st) {
    push @bars, [ '7 hub down: answer', "$down_st in ${down_s} s", 'deadline 20 s', '-', '503 <= 21 s',
                  verdict($down_st == 503 && $down_s <= 21) ];
    push @bars, [ '7 hub down: probe max latency', sprintf('%.1f ms', $down_probe->{max}),
                  sprintf('p50 %.2f ms', $down_probe->{p50}), '-', '< 50 ms',
                  verdict($down_probe->{max} < 50 && !$down_probe->{bad}) ] if $down_probe;
    if ($down_probe) {
        my $g = ($down_probe->{rss_peak}[0] - $down_probe->{rss0}[0]) / 1024;
        push @bars, [ '7 hub down: worker RSS growth', sprintf('%.1f MB', $g),
                      sprintf('%.1f MB before', $down_probe->{rss0}[0] / 1024), '-', '<= 64 MB', verdict($g <= 64) ];
    }
    push @bars, [ '7 hub down: [alert]/[crit] lines', $down_ac, '-', '-', '0', verdict($down_ac == 0) ];
}

if (@bars) {
    print "\n";
    printf "%-44s %-16s %-28s %-11s %-11s %s\n", 'figure', 'value', 'baseline (same run)', 'ratio', 'bar', 'verdict';
    printf "%-44s %-16s %-28s %-11s %-11s %s\n", @$_ for @bars;
}

print "\n";
if (@loud) {
    print "!!! NOT EVERY ANSWER WAS A SUCCESS:\n";
    print "!!!   $_\n" for @loud;
}
if (@warn) {
    printf "WARNING: other processes used more than 20%% of a CPU during %s: throughput and latency are"
         . " disturbed (CPU per push much less)\n", join(', ', @warn);
}
if (open my $l, '<', "$run/logs.txt") { print <$l> }
