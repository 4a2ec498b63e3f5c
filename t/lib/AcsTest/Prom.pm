package AcsTest::Prom;

# A strict reader of the Prometheus text exposition format (0.0.4): it
# dies on anything a Prometheus server would refuse or that the format
# forbids, and returns the samples as { 'name{label="v",...}' => value }.
#
# Checked: line syntax; metric and label names; label value escaping; one
# HELP and one TYPE per metric, before its samples, and samples of a metric
# together; known types; no duplicate series; counters, buckets and counts
# numeric and not negative; histogram buckets cumulative, ending with
# le="+Inf" equal to _count, with _sum present.

use strict;
use warnings;

use Exporter 'import';
our @EXPORT_OK = qw(parse_prometheus);

my $NAME  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LNAME = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $VALUE = qr/(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN)/;

sub parse_prometheus {
    my ($text) = @_;
    die "empty exposition\n" unless length $text;
    die "the exposition must end with a newline\n" unless $text =~ /\n\z/;

    my (%help, %type, %samples, %done, @order);
    my $current = '';
    my $n = 0;

    for my $line (split /\n/, $text) {
        $n++;
        next if $line eq '';

        if ($line =~ /^# HELP ($NAME) (.*)$/) {
            die "line $n: second HELP for $1\n" if $help{$1}++;
            die "line $n: HELP for $1 after its samples\n" if $done{$1} || $samples{"$1\0seen"};
            next;
        }
        if ($line =~ /^# TYPE ($NAME) (counter|gauge|histogram|summary|untyped)$/) {
            die "line $n: second TYPE for $1\n" if $type{$1};
            die "line $n: TYPE for $1 after its samples\n" if $samples{"$1\0seen"};
            $type{$1} = $2;
            push @order, $1;
            next;
        }
        die "line $n: bad comment line: $line\n" if $line =~ /^#\s*(HELP|TYPE)/;
        next if $line =~ /^#/;

        $line =~ /^($NAME)(?:\{(.*)\})? ($VALUE)(?: (-?\d+))?$/
            or die "line $n: not a sample line: $line\n";
        my ($name, $labels, $value) = ($1, $2 // '', $3);

        my %l;
        my $rest = $labels;
        while (length $rest) {
            $rest =~ s/^($LNAME)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)//
                or die "line $n: bad labels: {$labels}\n";
            die "line $n: label $1 twice\n" if exists $l{$1};
            $l{$1} = $2;
        }

        my $family = $name;
        $family =~ s/_(bucket|sum|count)$// if !$type{$name};
        my $t = $type{$family}
            or die "line $n: sample $name without a TYPE\n";
        die "line $n: $family samples are not together\n"
            if $family ne $current && $done{$family};
        $done{$current} = 1 if $current ne '' && $current ne $family;
        $current = $family;
        $samples{"$family\0seen"} = 1;

        my $series = $name . '{' . join(',', map { qq{$_="$l{$_}"} } sort keys %l) . '}';
        die "line $n: duplicate series $series\n" if exists $samples{$series};
        $samples{$series} = $value;

        if (($t eq 'counter' || $name =~ /_(bucket|count)$/) && $value < 0) {
            die "line $n: negative $t $series\n";
        }
    }

    # histograms: cumulative buckets, +Inf = _count, _sum present
    for my $h (grep { $type{$_} eq 'histogram' } @order) {
        my %groups;
        for my $s (grep { /^\Q$h\E_bucket\{/ } keys %samples) {
            my ($labels) = $s =~ /\{(.*)\}/;
            my ($le) = $labels =~ /(?:^|,)le="([^"]*)"/ or die "$h: bucket without le\n";
            (my $rest = $labels) =~ s/(?:^|,)le="[^"]*"//;
            $rest =~ s/^,//;
            push @{ $groups{$rest} }, [$le, $samples{$s}];
        }
        die "$h: no buckets\n" unless %groups;
        for my $g (keys %groups) {
            my @b = sort { ($a->[0] eq '+Inf' ? 9e99 : $a->[0]) <=> ($b->[0] eq '+Inf' ? 9e99 : $b->[0]) }
                    @{ $groups{$g} };
            die "$h\{$g}: no +Inf bucket\n" unless $b[-1][0] eq '+Inf';
            for my $i (1 .. $#b) {
                die "$h\{$g}: buckets not cumulative at le=$b[$i][0]\n"
                    if $b[$i][1] < $b[$i - 1][1];
            }
            my $count = $samples{"${h}_count{$g}"};
            my $sum = $samples{"${h}_sum{$g}"};
            die "$h\{$g}: no _count\n" unless defined $count;
            die "$h\{$g}: no _sum\n" unless defined $sum;
            die "$h\{$g}: +Inf bucket $b[-1][1] != _count $count\n"
                unless $b[-1][1] == $count;
        }
    }

    delete $samples{$_} for grep { /\0seen$/ } keys %samples;
    return \%samples;
}

1;
