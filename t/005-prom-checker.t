# The strict Prometheus checker used by t/400-status.t refuses what the
# text format forbids (so that its approval means something).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use AcsTest::Prom qw(parse_prometheus);

my $good = <<'TXT';
# HELP a_total A counter.
# TYPE a_total counter
a_total{x="1"} 3
a_total{x="2"} 0
# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="0.005"} 1
h_seconds_bucket{le="+Inf"} 2
h_seconds_sum 0.250
h_seconds_count 2
TXT

my $m = eval { parse_prometheus($good) };
ok($m, 'a valid exposition passes') or diag $@;
is($m->{'a_total{x="1"}'}, 3, 'samples are returned');

my %bad = (
    'a sample without TYPE'          => "b_total 1\n",
    'a duplicate series'             => "# TYPE a counter\na 1\na 2\n",
    'a negative counter'             => "# TYPE a counter\na -1\n",
    'a bad metric name'              => "# TYPE 1a counter\n1a 1\n",
    'unquoted label value'           => "# TYPE a counter\na{x=1} 1\n",
    'TYPE after samples'             => "# TYPE a counter\na 1\n# TYPE b counter\nb 1\n# TYPE a gauge\n",
    'samples of a metric apart'      => "# TYPE a counter\n# TYPE b counter\na{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n",
    'buckets not cumulative'         => "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
    '+Inf bucket other than _count'  => "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    'histogram without +Inf'         => "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",
    'no final newline'               => "# TYPE a counter\na 1",
    'a value that is not a number'   => "# TYPE a counter\na one\n",
);

for my $name (sort keys %bad) {
    ok(!eval { parse_prometheus($bad{$name}); 1 }, "refused: $name");
}

done_testing();
